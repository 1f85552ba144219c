"""`digitlab serve RUN --reload`: serve a model's newest checkpoint without a restart (e.g. while a fine-tune runs).

Checked on request, at most every `interval` seconds: each model's checkpoint file is looked at (path, mtime, size;
a run folder's best.safetensors, which may replace last.safetensors). A changed one is loaded in a thread, in full
(`load` reads every tensor, so a file still being copied in fails and is tried again later; digitlab itself
writes checkpoints atomically), and swapped in on the event loop, between two batches of the batching worker. A
checkpoint with other classes or another input shape is not swapped in: requests already cut for the old model
must still fit the new one; the server says so once and keeps serving the old model.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..errors import DigitlabError
from ..predict import Classifier, load
from ..runs import resolve_checkpoint, run_test_accuracy

DEFAULT_INTERVAL = 2.0


def _signature(path: Path) -> tuple[str, int, int] | None:
    """What identifies a checkpoint's version on disk: (file, mtime in ns, size); None while there is none."""
    try:
        file = resolve_checkpoint(path) if path.is_dir() else path
        st = file.stat()
    except (DigitlabError, OSError):
        return None
    return str(file), st.st_mtime_ns, st.st_size


@dataclass
class Reloader:
    """Watches the checkpoints of served models (name -> path given to serve) and swaps in new versions."""

    served: Any  # app.ServedModels
    paths: dict[str, Path]
    interval: float = DEFAULT_INTERVAL
    seen: dict[str, tuple[str, int, int] | None] = field(default_factory=dict)
    next_check: float = 0.0
    busy: threading.Lock = field(default_factory=threading.Lock)
    refused: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.seen = {name: _signature(p) for name, p in self.paths.items()}
        self.next_check = time.monotonic() + self.interval

    def due(self) -> bool:
        """True at most once per interval (the caller then checks): a stat per model, not per request."""
        now = time.monotonic()
        if now < self.next_check or self.busy.locked():
            return False
        self.next_check = now + self.interval
        return True

    def load_changed(self) -> dict[str, tuple[Classifier, tuple[str, int, int]]]:
        """In a thread: the models whose checkpoint changed, loaded in full; a file that fails to load (half copied)
        or changes while it loads is left for the next check."""
        fresh = {}
        with self.busy:
            for name, path in self.paths.items():
                sig = _signature(path)
                if sig is None or sig == self.seen.get(name):
                    continue
                try:
                    clf = load(path)
                except (DigitlabError, OSError, RuntimeError, ValueError):
                    continue
                if _signature(path) == sig:
                    fresh[name] = (clf, sig)
        return fresh

    def swap(self, fresh: dict[str, tuple[Classifier, tuple[str, int, int]]]) -> None:
        """On the event loop: the new models in place of the old, for every request from now on."""
        for name, (clf, sig) in fresh.items():
            self.seen[name] = sig
            old = self.served.models[name]
            if clf.classes != old.classes or clf.input_shape != old.input_shape:
                if sig not in self.refused:
                    self.refused.add(sig)
                    print(f"digitlab: not reloading {name}: {sig[0]} has classes {clf.classes} and input "
                          f"{list(clf.input_shape)}, the served model {old.classes} and {list(old.input_shape)}", file=sys.stderr)
                continue
            self.served.models[name] = clf
            self.served.batchers[name].clf = clf
            accuracy = run_test_accuracy(sig[0])
            if accuracy is None:
                self.served.accuracy.pop(name, None)
            else:
                self.served.accuracy[name] = accuracy
            print(f"digitlab: reloaded {name} from {sig[0]}", file=sys.stderr, flush=True)

    async def check(self) -> None:
        if self.due():
            self.swap(await run_in_threadpool(self.load_changed))


class ReloadOnRequest:
    """ASGI middleware: before a request is handled, give the reloader its (rate-limited) look at the checkpoints."""

    def __init__(self, app: Any, reloader: Reloader):
        self.app, self.reloader = app, reloader

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.reloader.check()
        await self.app(scope, receive, send)
