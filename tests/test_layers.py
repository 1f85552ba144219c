"""The layers point one way (shared/DESIGN.md): data, models, weights at the bottom; runs and evaluation (checkpoints,
scoring) above them; training; predict; compare; serve and cli on top. Checked on the source, and by importing each
layer alone in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import digitlab

SRC = Path(digitlab.__file__).resolve().parent
LAYERS = [  # a module may import its own layer and those before it
    {"errors", "device", "data", "models", "weights"},
    {"runs", "evaluation"},
    {"training"},
    {"predict"},
    {"compare"},
    {"serve", "cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _top(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported(path: Path) -> set[str]:
    """The digitlab sub-packages a file imports (relative or absolute), wherever the import sits."""
    package = path.relative_to(SRC).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.startswith("digitlab."):
                names = [node.module.split(".")[1]]
            else:
                continue
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("digitlab."))
    return {n for n in found if n in RANK}


def test_every_import_points_down():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == SRC:
            continue  # the package's lazy front door names everything
        me = _top(path)
        for name in _imported(path):
            if RANK[name] > RANK.get(me, 0):
                upward.append(f"{path.relative_to(SRC)} imports {name}")
    assert not upward, upward


@pytest.mark.slow
@pytest.mark.parametrize("module", ["data", "models", "runs", "evaluation", "training", "predict", "compare", "cli"])
def test_each_layer_imports_alone(module):
    result = subprocess.run([sys.executable, "-c", f"import digitlab.{module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_no_function_is_too_long_to_hold_in_your_head():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
