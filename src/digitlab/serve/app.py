"""The web app and REST API: FastAPI over `Classifier`. Every bad request gets a 4xx JSON error naming the problem.

The endpoints are module-level functions on an `APIRouter`; what they serve lives on `app.state` (`models`: a
`ServedModels`, `limits`: a `Limits`), so `create_app` only loads models and wires the pieces together.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import DigitlabError
from ..models import count_params
from ..predict import Classifier, Reading, load
from ..predict.inspect import conv_kernels, inspect_image, receptive_fields, to_png
from ..predict.saliency import PATCH, STRIDE, Saliency, frame_in_photo, occlusion
from ..runs import run_test_accuracy
from .corrections import DEFAULT_CAP, CorrectionRefused, CorrectionsStore
from .reload import DEFAULT_INTERVAL, Reloader, ReloadOnRequest

STATIC = Path(__file__).parent / "static"
MAX_BODY = 10 * 1024 * 1024
BODY_TIMEOUT = 30.0  # seconds for a whole request body to arrive: a slow or stalled client cannot hold a request open
MAX_JSON_DEPTH = 8  # {"pixels": [[[...]]]} is 4 deep; deeper JSON is refused before the parser sees it
JSON_BYTES_PER_VALUE = 48  # "-1.2345678901234567e-306, " is 26: twice that per input value, bar a little slack
JSON_SLACK = 16 * 1024  # for whitespace and keys besides "pixels"
INLINE_BODY = 64 * 1024  # bodies up to this size are preprocessed on the event loop; bigger photos in a thread
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "image/webp", "image/tiff", "application/octet-stream")


class ErrorDetail(BaseModel):
    """The one error shape: every 4xx (and the validation errors FastAPI raises) is {"detail": "one message"}."""

    detail: str


ERROR_TEXT = {
    400: "empty or malformed body",
    404: "unknown model, or no such path",
    408: "the request body did not arrive within the read timeout",
    413: "the body is over the size limit",
    415: "unsupported content-type",
    422: "the body or a query parameter is not valid",
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorDetail, "description": t} for s, t in ERROR_TEXT.items()}


class BadRequest(Exception):
    """A client mistake, answered as {"detail": message} with this status (and the connection closed if asked)."""

    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


@dataclass
class Limits:
    """What a request may cost: body bytes, seconds for the body to arrive, JSON nesting."""

    max_body: int = MAX_BODY
    body_timeout: float = BODY_TIMEOUT
    json_depth: int = MAX_JSON_DEPTH


class Batcher:
    """Dynamic batching: the requests waiting at the same moment share one forward pass. A request queues its
    images and the model runs once the event loop has let every other ready request queue theirs, so a lone
    request waits for nothing and under load the per-call cost of the model is paid once per batch."""

    def __init__(self, clf: Classifier):
        self.clf = clf
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []

    async def probs(self, images: np.ndarray) -> torch.Tensor:
        """(N, C, H, W) float images in [0, 1] -> (N, K) class probabilities."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((images, future))
        if len(self.pending) == 1:
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        batch, self.pending = self.pending, []
        try:
            probs = self.clf.predict_prepared(torch.from_numpy(np.concatenate([images for images, _ in batch], dtype=np.float32))).probs
            results = torch.split(probs, [len(images) for images, _ in batch])
        except Exception as e:  # the model failing is the server's problem: every waiting request hears of it
            results = [e] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.cancelled():  # the client went away
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


@dataclass
class ServedModels:
    """The models an app serves, by name (the first is the default), with their batchers and test accuracy."""

    models: dict[str, Classifier]
    accuracy: dict[str, float] = field(default_factory=dict)
    batchers: dict[str, Batcher] = field(init=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise DigitlabError("serve needs at least one model")
        self.batchers = {name: Batcher(clf) for name, clf in self.models.items()}

    @property
    def default(self) -> str:
        return next(iter(self.models))

    def pick(self, name: str | None) -> tuple[str, Classifier]:
        name = name or self.default
        if name not in self.models:
            raise BadRequest(404, f"unknown model '{name}'; GET /api/models lists: {', '.join(self.models)}")
        return name, self.models[name]


def _model_names(paths: list[str | Path]) -> list[str]:
    names = []
    for p in paths:
        p = Path(p)
        stem, _, tag = p.stem.partition(".")  # best.int8.onnx: the run's int8 export, served as RUN-int8
        base = p.name if p.is_dir() else (p.parent.name if stem in ("best", "last") else stem) + (f"-{tag}" if tag else "")
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def load_models(paths: list[str | Path]) -> ServedModels:
    """Load run folders or checkpoints, with each run's test accuracy when its metrics.json sits beside it."""
    models = dict(zip(_model_names(paths), (load(p) for p in paths)))
    accuracy = {name: run_test_accuracy(p) for name, p in zip(models, paths)}
    return ServedModels(models, {name: a for name, a in accuracy.items() if a is not None})


# ---- reading a request body -------------------------------------------------------------------------------------

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_OPEN, _CLOSE, _QUOTE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8), ord('"')


def json_depth(body: bytes) -> int:
    """How deep brackets nest in this JSON text, outside strings: checked before parsing, because Python's parser
    recurses once per level and a body of 100,000 '[' would otherwise end in a RecursionError."""
    raw = np.frombuffer(_ESCAPE.sub(b"", body), np.uint8)  # drop escapes, so every '"' left opens or closes a string
    outside = np.cumsum(raw == _QUOTE) % 2 == 0
    step = np.isin(raw, _OPEN).astype(np.int64) - np.isin(raw, _CLOSE)
    return int(np.cumsum(step * outside).max(initial=0))


async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole body, refused past `max_body` bytes or when it takes longer than `body_timeout` to arrive."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body:
        raise BadRequest(413, f"body is {int(declared):,} bytes; the limit is {limits.max_body:,}", close=True)
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body:
                    raise BadRequest(413, f"body is over the limit of {limits.max_body:,} bytes", close=True)
    except TimeoutError:
        raise BadRequest(408, f"the body did not arrive within {limits.body_timeout:g} s", close=True) from None
    except ClientDisconnect:  # nobody is left to read the answer; it only must not log a traceback
        raise BadRequest(400, "the client disconnected before sending the whole body", close=True) from None
    return bytes(body)


async def read_form_file(request: Request, body: bytes) -> bytes:
    """The 'file' field of a multipart body that was already read (Starlette parses it from a replayed stream)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception as e:  # malformed multipart of any kind is the client's mistake
        raise BadRequest(400, f"malformed multipart body ({e.__class__.__name__})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadRequest(422, "multipart body needs a file field named 'file'")
    return await upload.read()


def parse_pixels(body: bytes, clf: Classifier, limits: Limits) -> np.ndarray:
    """{"pixels": [[...]]} -> a float array; size and nesting are checked on the raw bytes first."""
    most = JSON_SLACK + JSON_BYTES_PER_VALUE * int(np.prod(clf.input_shape))
    if len(body) > most:
        raise BadRequest(413, f"JSON body is {len(body):,} bytes; pixels for this model need at most {most:,}")
    shape = '{"pixels": [[...], ...]} with numbers'
    try:
        return np.asarray(parse_json(body, limits, shape)["pixels"], dtype=np.float32)
    except (ValueError, TypeError, KeyError, IndexError):
        raise BadRequest(422, f"JSON body must be {shape}") from None


def parse_json(body: bytes, limits: Limits, shape: str, malformed: int = 422) -> Any:
    """A JSON body, its nesting checked on the raw bytes before parsing (a deep one would exhaust the parser's
    recursion); `shape` names what the endpoint expects, for the error; `malformed` is the status for bytes that are
    not JSON (predict documents 422, corrections 400)."""
    if json_depth(body) > limits.json_depth:
        raise BadRequest(422, f"JSON is nested deeper than {limits.json_depth} levels; send {shape}")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(malformed, f"body is not valid JSON; send {shape}") from None


async def read_input(request: Request, clf: Classifier) -> tuple[str, Any]:
    """('image', bytes) or ('pixels', array), from multipart, a raw image body or JSON; size- and time-capped."""
    limits: Limits = request.app.state.limits
    body = await read_body(request, limits)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        raise BadRequest(400, "empty body; send an image (multipart field 'file' or a raw PNG/JPEG) or JSON {\"pixels\": ...}")
    if ctype == "multipart/form-data":
        return "image", await read_form_file(request, body)
    if ctype == "application/json":
        return "pixels", parse_pixels(body, clf, limits)
    if ctype in IMAGE_TYPES or ctype.startswith("image/"):
        return "image", body
    raise BadRequest(415, f"unsupported content-type '{ctype or 'none'}'; use multipart/form-data, image/png, image/jpeg or application/json")


def prepared_pixels(clf: Classifier, pixels: np.ndarray) -> np.ndarray:
    """A pixel array as the model's (C, H, W) input in [0, 1]: 0-255 values are scaled, 0-1 values kept."""
    c, h, w = clf.input_shape
    if pixels.shape not in ((h, w), (c, h, w)):
        raise BadRequest(422, f"pixels must be {h}x{w} for this model, got shape {list(pixels.shape)}")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise BadRequest(422, "pixels must be finite numbers in 0-255 (or 0-1)")
    pixels = pixels / 255.0 if pixels.max() > 1.0 else pixels
    return pixels.reshape(c, h, w).astype(np.float32)


def _png_b64(array: np.ndarray) -> str:
    a = np.clip(np.asarray(array, np.float32), 0, 1)
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray((a * 255).round().astype(np.uint8)).save(buf, "PNG", compress_level=1)  # tiny; speed matters more
    return base64.b64encode(buf.getvalue()).decode()


# ---- endpoints --------------------------------------------------------------------------------------------------

MODEL_QUERY = Query(None, description="model name (default: the first)")


def healthz(request: Request) -> dict[str, Any]:
    """Liveness, which worker process answered (pid), and whether corrections are kept (serve --corrections)."""
    return {"status": "ok", "models": len(request.app.state.models.models), "pid": os.getpid(),
            "corrections": request.app.state.corrections is not None}


def list_models(request: Request) -> list[dict[str, Any]]:
    """Every served model with its classes, input shape, size and accuracy."""
    served: ServedModels = request.app.state.models
    out = []
    for name, clf in served.models.items():
        metrics = clf.record.get("metrics") or {}
        out.append({"name": name, "model": clf.name, "dataset": clf.record.get("dataset"), "classes": clf.classes,
                    "input_shape": list(clf.input_shape), "preprocess": clf.record.get("preprocess"),
                    "params": count_params(clf.model) if clf.model is not None else None,
                    "accuracy": served.accuracy.get(name), "val_accuracy": metrics.get("val_acc"), "default": name == served.default})
    return out


async def _off_loop(data: bytes, fn, *args):
    """Run `fn(*args)` here for a drawing or a small scan (quicker than a hop to a thread), in a thread for a big
    photo (tens of ms: the loop answers others meanwhile); a DigitlabError becomes a 422."""
    try:
        return fn(*args) if len(data) <= INLINE_BODY else await run_in_threadpool(fn, *args)
    except DigitlabError as e:
        raise BadRequest(422, str(e).removeprefix("upload: ")) from None


async def _read(served: "ServedModels", name: str, clf: Classifier, kind: str, data: Any, multi: bool) -> Reading:
    """A request's input read as one digit (its model call batched with other requests') or as a whole number
    (segmented by recognition, which scores its own candidate cuts in one forward pass)."""
    if kind == "pixels":
        if multi:
            raise BadRequest(422, "multi needs an image, not a pixel array")
        images, boxes = prepared_pixels(clf, data)[None], [None]
    elif multi:
        return await _off_loop(data, clf.read_number, data)
    else:
        images, boxes = await _off_loop(data, clf.cut, data)
    return clf.reading(images, boxes, await served.batchers[name].probs(images))


async def predict(request: Request, model: str | None = MODEL_QUERY,
                  multi: bool = Query(False, description="read a whole number written on one line")) -> JSONResponse:
    """Read a digit (or with multi=true a number) from a drawing, a photo or a pixel array."""
    served: ServedModels = request.app.state.models
    name, clf = served.pick(model)
    kind, data = await read_input(request, clf)
    t0 = time.perf_counter()
    reading = await _read(served, name, clf, kind, data, multi)
    digits = [{**d.to_dict(), "image": _png_b64(d.image)} for d in reading.digits]
    result = {"model": name, "label": reading.text, "prob": float(np.prod([d["prob"] for d in digits])), "digits": digits,
              "preprocessed": digits[0]["image"], "timing_ms": round(1000 * (time.perf_counter() - t0), 3)}
    if multi:
        result["alternatives"] = [{"label": text, "score": round(score, 4)} for text, score in reading.alternatives]
    else:
        result["probs"] = {c: round(float(p), 6) for c, p in zip(clf.classes, reading.digits[0].probs)}
    return JSONResponse(result)  # plain dicts of str/float: skip FastAPI's generic encoder


async def _prepared(request: Request, clf: Classifier) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """The request's input as the model's (C, H, W) image, and the digit's box in the photo when there is one."""
    kind, data = await read_input(request, clf)
    if kind == "pixels":
        return prepared_pixels(clf, data), None
    return await _off_loop(data, clf.locate, data)


def _rounded(a: Any, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


async def inspect(request: Request, model: str | None = MODEL_QUERY,
                  max_maps: int = Query(16, ge=1, le=256, description="feature maps per layer")) -> dict[str, Any]:
    """Feature maps of every conv layer (PNGs scaled to their own range, which is given), the first-layer filters,
    and each dense layer's strongest outputs."""
    name, clf = request.app.state.models.pick(model)
    image, _ = await _prepared(request, clf)
    try:
        result = inspect_image(clf, image)
    except DigitlabError as e:
        raise BadRequest(422, str(e)) from None
    b64 = lambda a: base64.b64encode(to_png(a)).decode()  # noqa: E731
    return {
        "model": name,
        "input": _png_b64(result.image),
        "layers": [{"name": n, "shape": list(a.shape), "maps": [b64(m) for m in a[:max_maps]],
                    "ranges": _rounded(torch.stack([a[:max_maps].amin((1, 2)), a[:max_maps].amax((1, 2))], 1))}
                   for n, a in result.layers],
        "filters": [b64(f.mean(0)) for f in result.filters[:max_maps]] if result.filters is not None else [],
        "dense": [dense_summary(n, a, result.classes if i == len(result.dense) - 1 else None)
                  for i, (n, a) in enumerate(result.dense)],
        "probs": {c: round(float(p), 6) for c, p in zip(result.classes, result.probs)},
    }


def dense_summary(name: str, values: torch.Tensor, classes: list[str] | None, top: int = 8) -> dict[str, Any]:
    """A dense layer's output size and its `top` strongest units (by class name for the output layer)."""
    v, i = values.topk(min(top, len(values)))
    units = [classes[k] for k in i.tolist()] if classes and len(classes) == len(values) else i.tolist()
    return {"name": name, "size": len(values), "top": [[u, round(float(x), 4)] for u, x in zip(units, v.tolist())],
            "output": classes is not None}


def network(request: Request, model: str | None = MODEL_QUERY,
            max_maps: int = Query(16, ge=1, le=256, description="output channels per layer whose kernels are listed"),
            inputs: int = Query(4, ge=1, le=64, description="kernels per output channel, the strongest first")) -> dict[str, Any]:
    """The network's static side, for exploring it: each conv layer's kernel, stride, receptive field (computed
    from kernels, strides and paddings along the traced graph: unit i of a map is centred on input pixel
    start + i * jump and sees size x size pixels) and, per shown map, the kernels that made it."""
    name, clf = request.app.state.models.pick(model)
    if clf.model is None:
        raise BadRequest(422, "the network view needs the PyTorch checkpoint, not an ONNX file")
    fields = receptive_fields(clf.model)
    layers = []
    for layer, m in clf.model.named_modules():
        if not isinstance(m, torch.nn.Conv2d):
            continue
        f = fields.get(layer)
        layers.append({"name": layer, "kernel": list(m.kernel_size), "stride": list(m.stride), "in_channels": m.in_channels,
                       "out_channels": m.out_channels, "field": {"size": f.size, "jump": f.jump, "start": f.start} if f else None,
                       "kernels": [[{"input": i, "weights": _rounded(w)} for i, w in ks]
                                   for ks in conv_kernels(clf.model, layer, max_maps, inputs)]})
    return {"model": name, "input_shape": list(clf.input_shape), "layers": layers}


def saliency_targets(result: Saliency, target: str | None) -> list[int]:
    """The class indices to explain: the answer and the runner-up, or the one class asked for."""
    if target is None:
        return result.ranked()[:2]
    if target not in result.classes:
        raise BadRequest(422, f"unknown target class '{target}'; this model's classes are {', '.join(result.classes)}")
    return [result.classes.index(target)]


async def saliency(request: Request, model: str | None = MODEL_QUERY,
                   target: str | None = Query(None, description="class to explain (default: the answer and the runner-up)"),
                   patch: int = Query(PATCH, ge=1, le=64, description="occluding square's side, model pixels"),
                   stride: int = Query(STRIDE, ge=1, le=64, description="step between occluding squares")) -> JSONResponse:
    """Why this answer: occlusion saliency. Every patch of the model's input is blanked in one batch; a map's value is
    the mean drop of the class's log-odds when the pixel is hidden (positive: it speaks for the class, negative:
    against it); `scale` is the map's largest absolute value.
    `frame` places the model's input over the photo (x0, y0, x1, y1 photo pixels; null for a pixel array)."""
    name, clf = request.app.state.models.pick(model)
    image, box = await _prepared(request, clf)
    t0 = time.perf_counter()
    result = await run_in_threadpool(occlusion, clf, image, patch, stride)
    picked = saliency_targets(result, target)
    maps = [{"class": result.classes[k], "prob": round(float(result.probs[k]), 6), "map": _rounded(result.maps[k]),
             "scale": round(float(result.maps[k].abs().max()), 6)} for k in picked]
    return JSONResponse({
        "model": name, "method": "occlusion", "patch": patch, "stride": stride, "input": _png_b64(image),
        "frame": frame_in_photo(image, box) if box else None, "maps": maps, "timing_ms": round(1000 * (time.perf_counter() - t0), 3),
    })


async def save_correction(request: Request, model: str | None = MODEL_QUERY) -> dict[str, Any]:
    """Keep a drawing with its right label, to teach the model later: JSON {"label": 3 or a class name, "pixels":
    the model-sized drawing (0..1, ink = 1), "png": base64 of the larger drawing}. Needs serve --corrections DIR."""
    store: CorrectionsStore | None = request.app.state.corrections
    if store is None:
        raise BadRequest(404, "corrections are off; start the server with --corrections DIR to keep them")
    _, clf = request.app.state.models.pick(model)
    limits: Limits = request.app.state.limits
    payload = parse_json(await read_body(request, limits), limits, '{"label": 3, "pixels": [[...]], "png": "<base64 PNG>"}', 400)
    c, h, w = clf.input_shape
    if c != 1:
        raise BadRequest(422, f"corrections are grey drawings; model '{clf.name}' takes {c}-channel images")
    try:
        return await run_in_threadpool(store.save, payload, clf.classes, (h, w))
    except CorrectionRefused as e:
        raise BadRequest(e.status, e.message) from None
    except (DigitlabError, OSError) as e:  # a full disk or a folder we may not write: nothing was saved
        raise BadRequest(507, f"the correction could not be saved: {e}") from None


def index() -> FileResponse:
    """The drawing page."""
    return FileResponse(STATIC / "index.html")


def body_doc(served: ServedModels) -> dict[str, Any]:
    """Request bodies as OpenAPI describes them, so /docs can send them and a fuzzer can generate them. The pixel
    array's shape is spelled out when every model takes the same input."""
    shapes = {clf.input_shape for clf in served.models.values()}
    number: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 255}
    pixels: dict[str, Any] = {"type": "array", "items": {"type": "array", "items": number}}
    if len(shapes) == 1:
        c, h, w = next(iter(shapes))
        pixels = {"type": "array", "minItems": w, "maxItems": w, "items": number}
        for n in (h, c) if c > 1 else (h,):
            pixels = {"type": "array", "minItems": n, "maxItems": n, "items": pixels}
    pixels["description"] = ("HxW (or CxHxW) rows of 0-255 or 0-1 values, white digit on black as in MNIST; "
                             "used as the model input without photo preprocessing")
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                                           "required": ["file"]}},
        "image/png": binary, "image/jpeg": binary,
        "application/json": {"schema": {"type": "object", "required": ["pixels"], "properties": {"pixels": pixels}}},
    }}}


def build_router(served: ServedModels) -> APIRouter:
    """The routes, with request bodies documented for these models."""
    doc = body_doc(served)
    r = APIRouter()
    r.add_api_route("/healthz", healthz, methods=["GET"])
    r.add_api_route("/api/healthz", healthz, methods=["GET"], include_in_schema=False)  # the page's path for the same answer
    r.add_api_route("/api/models", list_models, methods=["GET"])
    r.add_api_route("/api/predict", predict, methods=["POST"], openapi_extra=doc, responses=BODY_ERRORS)
    r.add_api_route("/api/inspect", inspect, methods=["POST"], openapi_extra=doc, responses=BODY_ERRORS)
    r.add_api_route("/api/saliency", saliency, methods=["POST"], openapi_extra=doc, responses=BODY_ERRORS)
    r.add_api_route("/api/network", network, methods=["GET"], responses={k: BODY_ERRORS[k] for k in (404, 422)})
    r.add_api_route("/api/corrections", save_correction, methods=["POST"], responses=BODY_ERRORS)
    r.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    return r


# ---- errors: one shape everywhere -------------------------------------------------------------------------------

async def on_bad_request(_request: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers={"connection": "close"} if exc.close else None)


async def on_http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)  # keeps 405's Allow


async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's list of validation errors, as one line like the others: 'query max_maps: Input should be ...'."""
    parts = [f"{' '.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


def create_app(models: list[str | Path] | dict[str, Classifier], max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT,
               corrections: str | Path | None = None, corrections_cap: int = DEFAULT_CAP, reload: bool = False,
               reload_interval: float = DEFAULT_INTERVAL) -> FastAPI:
    """An app serving these models (paths to runs/checkpoints, or name -> Classifier); the first is the default.
    `corrections`: a folder where POST /api/corrections keeps labelled drawings (at most `corrections_cap`);
    `reload`: serve each model's newest checkpoint (paths only), looked for at most every `reload_interval` s."""
    if reload and isinstance(models, dict):
        raise DigitlabError("reload watches checkpoint files; give model paths, not loaded classifiers")
    if corrections_cap < 1:
        raise DigitlabError(f"--corrections-cap must be at least 1, got {corrections_cap}")
    served = ServedModels(dict(models)) if isinstance(models, dict) else load_models(list(models))
    app = FastAPI(title="digitlab", version="1", description="Draw or upload a digit; the model answers. "
                  "Errors are JSON {\"detail\": \"message\"} with a 4xx status.")
    app.state.models = served
    app.state.limits = Limits(max_body=max_body, body_timeout=body_timeout)
    app.state.corrections = CorrectionsStore(Path(corrections), corrections_cap) if corrections is not None else None
    if reload:
        paths = dict(zip(served.models, (Path(p) for p in models)))
        app.add_middleware(ReloadOnRequest, reloader=Reloader(served, paths, reload_interval))
    app.include_router(build_router(served))
    app.add_exception_handler(BadRequest, on_bad_request)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
