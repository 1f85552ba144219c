"""A trained model ready to use: `digitlab.load(path).predict(images)`."""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import ImageData, load_dataset, normalize, relabel
from ..data.reject import NOT_DIGIT
from ..device import inference_batch, memory_format, pick_device
from ..errors import DigitlabError
from ..evaluation import evaluate, score
from ..models import get_entry
from ..runs import CHECKPOINT_NAMES, load_model, resolve_checkpoint
from ..weights import reader_path
from .onnx import open_session
from .preprocess import digit_to_mnist, resize_plain


GRAPH_MIN_BATCH = 64  # below this the eager model answers sooner (lenet5: 17k vs 10k images/s at 8 per call)


def _cpu_graph(model: torch.nn.Module | None, record: dict[str, Any]) -> torch.nn.Module | None:
    """For models registered with cpu_graph: the same model as a torch.fx graph with BatchNorm folded into the convs
    and activations kept in oneDNN's blocked layout from layer to layer (torch's optimize_for_inference, which works
    on a copy made once, from the weights the Classifier is given). Outputs match the eager model to ~1e-7; None for
    other models, or if the model cannot be traced."""
    try:
        if model is None or not get_entry(record["model"]["name"]).cpu_graph:
            return None
        with warnings.catch_warnings():  # its torch.utils.mkldnn import warns that torch.jit is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            from torch.fx.experimental.optimization import optimize_for_inference

            return optimize_for_inference(model.eval())
    except Exception:  # noqa: BLE001 - unknown or untraceable models keep the eager path
        return None


@dataclass
class Prediction:
    labels: torch.Tensor  # (N,) class indices
    probs: torch.Tensor  # (N, K) softmax probabilities
    classes: list[str]

    @property
    def names(self) -> list[str]:
        return [self.classes[i] for i in self.labels.tolist()]

    def top_k(self, k: int = 3) -> list[list[tuple[str, float]]]:
        values, indices = self.probs.topk(min(k, self.probs.shape[1]), dim=1)
        return [[(self.classes[i], round(v, 6)) for i, v in zip(ii.tolist(), vv.tolist())] for ii, vv in zip(indices, values)]


class Classifier:
    """A model plus the record that says how to feed it (classes, input shape, normalisation)."""

    def __init__(self, model: torch.nn.Module | None, record: dict[str, Any], device: str | torch.device = "cpu",
                 session: Any = None):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.format = memory_format(self.device)
        self.model = model.to(self.device, memory_format=self.format).eval() if model is not None else None
        self.session = session  # an onnxruntime.InferenceSession when the backend is ONNX
        self.record = record
        self.classes: list[str] = record["classes"]
        self.input_shape: tuple[int, int, int] = tuple(record["input_shape"])  # type: ignore[assignment]
        self.mean = torch.tensor(record["mean"], device=self.device)
        self.std = torch.tensor(record["std"], device=self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Classifier":
        model, record = load_model(path)
        return cls(model, record, device)

    @classmethod
    def from_onnx(cls, path: str | Path) -> "Classifier":
        """An exported model run by onnxruntime on CPU; the digitlab record travels in the ONNX metadata."""
        session, record = open_session(path)
        return cls(None, record, "cpu", session=session)

    @functools.cached_property
    def graph(self) -> torch.nn.Module | None:
        """The CPU batch graph (see `_cpu_graph`), built on the first batch that uses it: 40-70 ms that a
        one-photo `digitlab predict` or a server answering single drawings never pays."""
        return _cpu_graph(self.model, self.record) if self.device.type == "cpu" else None

    @property
    def name(self) -> str:
        return self.record["model"]["name"]

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float batch -> class probabilities on the CPU, in chunks of the device's inference batch."""
        out = []
        size = inference_batch(self.device)
        for i in range(0, x.shape[0], size):
            chunk = x[i:i + size]
            if self.session is not None:
                logits = torch.from_numpy(self.session.run(None, {"images": chunk.cpu().numpy()})[0])
            elif len(chunk) >= GRAPH_MIN_BATCH and self.graph is not None:
                logits = self.graph(chunk.contiguous())
            else:
                logits = self.model(chunk.contiguous(memory_format=self.format))
            out.append(logits.float().softmax(1).cpu())
        return torch.cat(out)

    def _as_batch(self, images: Any) -> torch.Tensor:
        """Any of (H,W), (C,H,W), (N,H,W), (N,C,H,W); uint8 0-255 or float 0-1 -> a (N, C, H, W) batch that
        `predict_prepared` may normalise: uint8 as it is (normalising converts it in one pass), float as a copy."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        c, h, w = self.input_shape
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[None] if x.shape[0] == c and c in (1, 3) and x.shape[0] != x.shape[1] else x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise DigitlabError(f"expected images of shape ({c}, {h}, {w}) (single or batched), got {tuple(x.shape)}; "
                                "for photos of any size use `digitlab predict`, which preprocesses them")
        if x.dtype == torch.uint8:
            return x
        x = x.float()
        if not torch.isfinite(x).all():
            raise DigitlabError("images contain NaN or infinite values")
        return x.div(255.0) if x.max() > 1.5 else x.clone()  # a copy: normalising must not touch the caller's array

    def predict(self, images: Any) -> Prediction:
        """Class indices and probabilities for one image or a batch."""
        return self.predict_prepared(self._as_batch(images))

    @torch.inference_mode()
    def predict_prepared(self, x: torch.Tensor) -> Prediction:
        """`predict` without the input checks, for a uint8 batch or a float batch in [0, 1] of the model's (N, C, H, W)
        that we made ourselves (what `cut` returns); a float batch is normalised in place."""
        probs = self._probs(normalize(x.to(self.device), self.mean, self.std))
        return Prediction(probs.argmax(1), probs, self.classes)

    def prepare(self, source: Any) -> np.ndarray:
        """A photo or scan (path, bytes or PIL image) -> the (C, H, W) float image this model expects: MNIST-style
        digit normalisation for digit models, plain resize for the others."""
        return self.locate(source)[0]

    def locate(self, source: Any) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """`prepare`, plus where the digit's ink was in the photo (x0, y0, x1, y1 pixels) for digit models, so a
        page can draw the box, or lay a heat-map of the model's input back over the photo; None for the others."""
        c, h, _ = self.input_shape
        if self.record.get("preprocess") == "digits" and c == 1:
            digit = digit_to_mnist(source, h)
            return digit.image[None], digit.box
        return resize_plain(source, c, h), None

    def read(self, source: Any, multi: bool = False, top_k: int = 3) -> "Reading":
        """Predict on a photo: one digit, or with `multi` a whole number written on one line (`read_number`)."""
        if multi:
            return self.read_number(source, top_k)
        images, boxes = self.cut(source)
        return self.reading(images, boxes, self.predict_prepared(torch.tensor(images)).probs, top_k)

    def read_number(self, source: Any, top_k: int = 3) -> "Reading":
        """A whole number on one line, segmented by recognition (see predict/reading.py): the best reading, its
        next alternatives (`Reading.alternatives`) and each digit with its box; one batched forward pass."""
        from .reading import read_number

        self._check_digit_model()
        return read_number(self, source, top_k)

    def _check_digit_model(self) -> None:
        if self.record.get("preprocess") != "digits":
            raise DigitlabError(f"--multi reads numbers and needs a digit model; '{self.name}' was trained on "
                                f"{self.record.get('dataset')}")

    def cut(self, source: Any) -> tuple[np.ndarray, list[tuple[int, int, int, int] | None]]:
        """The first half of reading one digit, which runs no model: the (1, C, H, W) float image the model will
        see and the digit's box, so a server can batch the model call of many requests. A number's cut is found by
        reading it: `read_number`."""
        image, box = self.locate(source)
        return image[None], [box]

    def reading(self, images: np.ndarray, boxes: list, probs: torch.Tensor, top_k: int = 3) -> "Reading":
        """The second half of `read`: what `cut` found plus the model's probabilities for it -> a Reading. A
        `not-digit` class is never the answer: each digit is the best digit class, its reject probability aside."""
        parts = [make_read_digit(self.classes, probs[i], top_k, boxes[i], images[i]) for i in range(len(images))]
        return Reading("".join(p.label for p in parts), parts)

    def evaluate(self, dataset: "str | ImageData", split: str = "test", root: str | None = None):
        """Score the model on a dataset (name or ImageData) of its input shape. Labels are matched to the model's
        classes by name: a dataset whose classes are some of the model's (MNIST's 0-9 for a 0-9 + not-digit model)
        is scored, one with a class the model does not know (Fashion-MNIST for an MNIST model) is refused. An .onnx
        file (fp32 or int8) is scored through onnxruntime, as it will serve."""
        c, h, _ = self.input_shape
        name = dataset if isinstance(dataset, str) else "the data"
        if isinstance(dataset, str):
            splits = load_dataset(dataset, root=root, val_split=0.0, image_size=h, channels=c)
            data = {"test": splits.test, "train": splits.train}.get(split)
            if data is None:
                raise DigitlabError(f"unknown split '{split}'; choose test or train")
        else:
            data = dataset
        if data.shape != self.input_shape:
            raise DigitlabError(f"{name} is {data.shape} but the model takes {self.input_shape}")
        classes = list(self.classes)
        if list(data.classes) != classes:  # a subset, or the same names in another order: relabel by name
            if not isinstance(data, ImageData):
                raise DigitlabError(f"{name} lists its classes differently from the model; load it into memory to evaluate")
            data = relabel(data, classes, f"{name} (the model was trained on {self.record.get('dataset', 'its training data')})")
        if self.model is not None:
            return evaluate(self.model, data, self.record["mean"], self.record["std"])
        if not isinstance(data, ImageData):
            raise DigitlabError(f"{name} is streamed from disk; score an .onnx file on data that fits in memory, or "
                                "evaluate the run folder")
        probs = torch.cat([self._probs(normalize(data.images[i:i + 4096], self.mean, self.std))
                           for i in range(0, len(data), 4096)])
        return score(probs.clamp_min(1e-12).log(), data.labels.cpu(), classes)


@dataclass
class ReadDigit:
    label: str
    prob: float  # of `label` among the digit classes
    top_k: list[tuple[str, float]]  # digit classes only, renormalised over them
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in the photo (multi only)
    image: np.ndarray  # (C, H, W) float 0-1: what the model saw
    probs: list[float]  # every class's probability, as the model gave them
    not_digit: float | None = None  # the model's `not-digit` probability, for models that have that class

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prob": round(self.prob, 6), "top_k": [[n, p] for n, p in self.top_k],
                **({"box": list(self.box)} if self.box else {}),
                **({"not_digit": round(self.not_digit, 6)} if self.not_digit is not None else {})}


def make_read_digit(classes: list[str], probs: torch.Tensor, top_k: int, box: tuple[int, int, int, int] | None,
                    image: np.ndarray) -> ReadDigit:
    """One candidate's probabilities -> a ReadDigit whose label and top-k are digit classes only."""
    row = probs.double()
    keep = [i for i, c in enumerate(classes) if c != NOT_DIGIT]
    within = row[keep] / row[keep].sum().clamp_min(1e-12)
    values, order = within.topk(min(top_k, len(keep)))
    top = [(classes[keep[i]], round(float(v), 6)) for i, v in zip(order.tolist(), values.tolist())]
    reject = float(row[classes.index(NOT_DIGIT)]) if NOT_DIGIT in classes else None
    return ReadDigit(top[0][0], float(values[0]), top, box, image, probs.tolist(), reject)


@dataclass
class Reading:
    """What a model read on one photo: a label, or for a number the digit string and each digit."""
    text: str
    digits: list[ReadDigit]
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # numbers: the next best texts, scores
    score: float | None = None  # numbers: the joint log-score of `text` (alternatives' are on the same scale)

    @property
    def prob(self) -> float:
        """Confidence of the whole reading: the product of the digits' probabilities."""
        return float(np.prod([d.prob for d in self.digits]))

    @property
    def not_digit(self) -> float | None:
        """The highest reject probability among the digits (None for models without a `not-digit` class)."""
        values = [d.not_digit for d in self.digits if d.not_digit is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "prob": round(self.prob, 6), "digits": [d.to_dict() for d in self.digits],
                "alternatives": [[t, s] for t, s in self.alternatives],
                **({"score": self.score} if self.score is not None else {}),
                **({"not_digit": round(self.not_digit, 6)} if self.not_digit is not None else {})}


def is_model_path(path: str | Path) -> bool:
    """Whether a command-line argument names a model (a run folder, a checkpoint or an .onnx file) rather than an
    image or a folder of images."""
    p = Path(path)
    if p.is_dir():
        return any((p / name).is_file() for name in CHECKPOINT_NAMES)
    return p.suffix.lower() in (".safetensors", ".onnx")


def load(path: str | Path | None = None, device: str = "cpu", backend: str = "torch") -> Classifier:
    """Load a checkpoint file or run folder (torch), or an exported .onnx file (onnxruntime); with no path, the reader
    model that ships with digitlab (digits 0-9 plus `not-digit`, trained for photos of handwriting)."""
    if backend not in ("torch", "onnx"):
        raise DigitlabError(f"unknown backend '{backend}'; choose torch or onnx")
    if path is None:
        if backend == "onnx":
            raise DigitlabError("the shipped reader runs on the torch backend; export it first: digitlab export "
                                "--out reader.onnx, then pass reader.onnx")
        return Classifier.from_checkpoint(reader_path(), device)
    p = Path(path)
    if p.suffix == ".onnx":
        return Classifier.from_onnx(p)
    if backend == "onnx":
        onnx_path = resolve_checkpoint(p).with_suffix(".onnx")
        if not onnx_path.is_file():
            raise DigitlabError(f"no {onnx_path.name} beside the checkpoint; run `digitlab export {path}` first")
        return Classifier.from_onnx(onnx_path)
    return Classifier.from_checkpoint(path, device)
