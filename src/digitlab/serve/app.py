"""The web app and REST API: FastAPI over `Classifier`. Every bad request gets a 4xx JSON error naming the problem."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from PIL import Image

from ..errors import DigitlabError
from ..models import count_params
from ..predict import Classifier, load
from ..predict.inspect import inspect_image, to_png

STATIC = Path(__file__).parent / "static"
MAX_BODY = 10 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "image/webp", "image/tiff", "application/octet-stream")

# request bodies as OpenAPI describes them, so /docs can send them and a fuzzer can generate them
BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                                               "required": ["file"]}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object", "required": ["pixels"], "properties": {
                "pixels": {"type": "array", "description": "28x28 (or the model's HxW) rows of 0-255 or 0-1 values, "
                           "white digit on black as in MNIST; used as the model input without photo preprocessing",
                           "items": {"type": "array", "items": {"type": "number"}}}}}},
        },
    }
}


INLINE_BODY = 64 * 1024  # bodies up to this size are preprocessed on the event loop; bigger photos in a thread


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


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def _png_b64(array: np.ndarray) -> str:
    a = np.clip(np.asarray(array, np.float32), 0, 1)
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray((a * 255).round().astype(np.uint8)).save(buf, "PNG", compress_level=1)  # tiny; speed matters more
    return base64.b64encode(buf.getvalue()).decode()


def _model_names(paths: list[str | Path]) -> list[str]:
    names = []
    for p in paths:
        p = Path(p)
        base = p.name if p.is_dir() else (p.parent.name if p.stem in ("best", "last") else p.stem)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def create_app(models: list[str | Path] | dict[str, Classifier], max_body: int = MAX_BODY) -> FastAPI:
    """An app serving these models (paths to runs/checkpoints, or name -> Classifier); the first is the default."""
    accuracy: dict[str, float] = {}
    if not isinstance(models, dict):
        paths = list(models)
        models = dict(zip(_model_names(paths), (load(p) for p in paths)))
        for name, p in zip(models, paths):  # the run's test accuracy, when the checkpoint sits in its run folder
            run_dir = Path(p) if Path(p).is_dir() else Path(p).parent
            try:
                accuracy[name] = json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
    if not models:
        raise DigitlabError("serve needs at least one model")
    default = next(iter(models))
    batchers = {name: Batcher(clf) for name, clf in models.items()}
    app = FastAPI(title="digitlab", version="1", description="Draw or upload a digit; the model answers. "
                  "Errors are JSON {\"detail\": ...} with a 4xx status.")

    @app.exception_handler(BadRequest)
    async def _bad(_request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    def pick(name: str | None) -> tuple[str, Classifier]:
        name = name or default
        if name not in models:
            raise BadRequest(404, f"unknown model '{name}'; GET /api/models lists: {', '.join(models)}")
        return name, models[name]

    async def read_input(request: Request) -> tuple[str, Any]:
        """('image', bytes) or ('pixels', array), from multipart, a raw image body or JSON; size-capped."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body:
            raise BadRequest(413, f"body is {int(declared):,} bytes; the limit is {max_body:,}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise BadRequest(413, f"body is over the limit of {max_body:,} bytes")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not body:
            raise BadRequest(400, "empty body; send an image (multipart field 'file' or a raw PNG/JPEG) or JSON {\"pixels\": ...}")
        if ctype == "multipart/form-data":
            request._body = bytes(body)  # let Starlette parse what we already read
            try:
                form = await request.form()
            except Exception as e:  # malformed multipart of any kind is the client's mistake
                raise BadRequest(400, f"malformed multipart body ({e.__class__.__name__})") from None
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest(422, "multipart body needs a file field named 'file'")
            return "image", await upload.read()
        if ctype == "application/json":
            try:
                payload = json.loads(body)
                pixels = np.asarray(payload["pixels"], dtype=np.float32)
            except (ValueError, TypeError, KeyError, json.JSONDecodeError):
                raise BadRequest(422, "JSON body must be {\"pixels\": [[...], ...]} with numbers") from None
            return "pixels", pixels
        if ctype in IMAGE_TYPES or ctype.startswith("image/"):
            return "image", bytes(body)
        raise BadRequest(415, f"unsupported content-type '{ctype or 'none'}'; use multipart/form-data, image/png, image/jpeg or application/json")

    def prepared_pixels(clf: Classifier, pixels: np.ndarray) -> np.ndarray:
        c, h, w = clf.input_shape
        if pixels.shape not in ((h, w), (c, h, w)):
            raise BadRequest(422, f"pixels must be {h}x{w} for this model, got shape {list(pixels.shape)}")
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
            raise BadRequest(422, "pixels must be finite numbers in 0-255 (or 0-1)")
        pixels = pixels / 255.0 if pixels.max() > 1.0 else pixels
        return pixels.reshape(c, h, w).astype(np.float32)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": len(models), "pid": os.getpid()}  # pid: which worker process answered

    @app.get("/api/models")
    def list_models() -> list[dict[str, Any]]:
        out = []
        for name, clf in models.items():
            metrics = clf.record.get("metrics") or {}
            out.append({"name": name, "model": clf.name, "dataset": clf.record.get("dataset"), "classes": clf.classes,
                        "input_shape": list(clf.input_shape), "preprocess": clf.record.get("preprocess"),
                        "params": count_params(clf.model) if clf.model is not None else None,
                        "accuracy": accuracy.get(name), "val_accuracy": metrics.get("val_acc"), "default": name == default})
        return out

    @app.post("/api/predict", openapi_extra=BODY_DOC)
    async def predict(request: Request, model: str | None = Query(None, description="model name (default: the first)"),
                      multi: bool = Query(False, description="read a whole number written on one line")) -> JSONResponse:
        name, clf = pick(model)
        kind, data = await read_input(request)
        t0 = time.perf_counter()
        try:
            if kind == "pixels":
                if multi:
                    raise BadRequest(422, "multi needs an image, not a pixel array")
                images, boxes = prepared_pixels(clf, data)[None], [None]
            elif len(data) <= INLINE_BODY:  # a drawing or a small scan: quicker than a hop to a thread
                images, boxes = clf.cut(data, multi=multi)
            else:  # a big photo takes tens of ms: the event loop keeps answering the others meanwhile
                images, boxes = await run_in_threadpool(clf.cut, data, multi)
        except DigitlabError as e:
            raise BadRequest(422, str(e).removeprefix("upload: ")) from None
        reading = clf.reading(images, boxes, await batchers[name].probs(images))
        text = reading.text
        digits = [{**d.to_dict(), "image": _png_b64(d.image)} for d in reading.digits]
        all_probs = reading.digits[0].probs if not multi else None
        result = {"model": name, "label": text, "prob": float(np.prod([d["prob"] for d in digits])), "digits": digits,
                  "preprocessed": digits[0]["image"], "timing_ms": round(1000 * (time.perf_counter() - t0), 3)}
        if all_probs is not None:
            result["probs"] = {c: round(float(p), 6) for c, p in zip(clf.classes, all_probs)}
        return JSONResponse(result)  # plain dicts of str/float: skip FastAPI's generic encoder

    @app.post("/api/inspect", openapi_extra=BODY_DOC)
    async def inspect(request: Request, model: str | None = Query(None, description="model name (default: the first)"),
                      max_maps: int = Query(16, ge=1, le=256, description="feature maps per layer")) -> dict[str, Any]:
        name, clf = pick(model)
        kind, data = await read_input(request)
        try:
            result = inspect_image(clf, prepared_pixels(clf, data) if kind == "pixels" else data)
        except DigitlabError as e:
            raise BadRequest(422, str(e).removeprefix("upload: ")) from None
        b64 = lambda a: base64.b64encode(to_png(a)).decode()  # noqa: E731
        return {
            "model": name,
            "input": _png_b64(result.image),
            "layers": [{"name": n, "shape": list(a.shape), "maps": [b64(m) for m in a[:max_maps]]} for n, a in result.layers],
            "filters": [b64(f.mean(0)) for f in result.filters[:max_maps]] if result.filters is not None else [],
            "probs": {c: round(float(p), 6) for c, p in zip(result.classes, result.probs)},
        }

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

