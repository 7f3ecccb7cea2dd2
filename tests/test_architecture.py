"""The package's imports run one way, from the edges (CLI, compatibility front, integrations) down to the pure
analysis, as docs/architecture.md draws them; the pure layer never imports torch.

A new module must be placed in ``LAYERS``: the test fails for a module it does not know, so the map and the
document cannot silently drift apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lr_finder"

# Lower layers know nothing of higher ones; a module may import its own layer and any below.
LAYERS: dict[str, int] = {
    **dict.fromkeys(["errors", "_logging", "_version"], 0),
    # pure: numbers in, numbers out
    **dict.fromkeys(["schedule", "monitor", "smoothing", "suggestion", "history", "verify", "settings"], 1),
    # side effects: files, figures, the model, its state, the processes
    # (tracking: report.Readout.log_to imports it, so it sits beside report, not with the edges)
    **dict.fromkeys(["files", "plotting", "report", "tracking", "snapshot", "sharding", "loaders", "batches",
                     "validation", "training", "distributed", "apply"], 2),
    "finder": 3,
    # edges: someone else's objects or arguments turned into the core's
    **dict.fromkeys(["demo", "spec", "cli", "compat", "integrations"], 4),
    "__init__": 5,
}
PURE_WITHOUT_TORCH = ["schedule", "monitor", "smoothing", "suggestion", "history", "verify", "settings", "errors"]


def _modules() -> dict[str, Path]:
    """Module name (the top-level name for files inside a subpackage) -> file, for every file of the package."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        name = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        found[f"{name}/{'/'.join(rel.parts[1:])}" if len(rel.parts) > 1 else name] = path
    return found


def _layer_of(key: str) -> str:
    return key.split("/", 1)[0]


def _imports(text: str, depth: int = 0) -> set[str]:
    """Top-level package modules imported by a module's source (relative and absolute ``lr_finder`` imports).

    ``depth``: 0 for a top-level module, 1 inside a subpackage (whose ``from .x`` is a sibling).
    """
    tree = ast.parse(text)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level <= depth:  # a sibling inside the same subpackage
                    continue
                parts = (node.module or "").split(".")
                names = [parts[0]] if parts[0] else [alias.name for alias in node.names]
            elif node.module and node.module.split(".")[0] == "lr_finder":
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            else:
                continue
            out.update("__init__" if n == "__version__" else n for n in names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lr_finder" and len(parts) > 1:
                    out.add(parts[1])
    return out


MODULES = _modules()


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_layer_of(k) for k in MODULES} - set(LAYERS))
    assert not unknown, f"place {unknown} in LAYERS here and in docs/architecture.md"


@pytest.mark.parametrize("key", sorted(MODULES))
def test_imports_run_down_the_layers(key: str) -> None:
    own = LAYERS.get(_layer_of(key), 99)
    path = MODULES[key]
    imported = _imports(path.read_text(), len(path.relative_to(PACKAGE).parts) - 1)
    upward = sorted(m for m in imported if m in LAYERS and LAYERS[m] > own)
    assert not upward, f"{key} (layer {own}) imports {upward} from a higher layer"


def _lines_importing(name: str, package: str) -> list[int]:
    tree = ast.parse(MODULES[name].read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == package for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package and not node.level)
    ]


@pytest.mark.parametrize("name", PURE_WITHOUT_TORCH)
def test_pure_layer_does_not_import_torch(name: str) -> None:
    torch_imports = _lines_importing(name, "torch")
    assert not torch_imports, f"{name} imports torch at lines {torch_imports}"


def test_settings_import_no_numpy() -> None:
    """The settings' checks need only the standard library (a numpy boolean is recognised by its type's name)."""
    assert not _lines_importing("settings", "numpy")


def test_the_check_sees_upward_imports() -> None:
    """The parser itself finds an upward import written each way (else the tests above prove nothing)."""
    text = "from .finder import LRFinder\nimport lr_finder.cli\nfrom lr_finder import plotting\nfrom . import demo\n"
    assert _imports(text) == {"finder", "cli", "plotting", "demo"}
    assert _imports("from . import helpers\nfrom ..finder import LRFinder\n", depth=1) == {"finder"}
    assert _imports("from lr_finder import __version__\n") == {"__init__"}


@pytest.mark.parametrize("key", sorted(MODULES))
def test_no_global_hooks_and_no_cuda_streams(key: str) -> None:
    """What cannot run here stays plain: a global module hook fires for every model of the process and not
    inside compiled or CUDA graphs, and a side stream's ordering cannot be tested without a GPU."""
    text = MODULES[key].read_text()
    found = [w for w in ("register_module_forward", "cuda.Stream", "cuda.stream(",
                         "record_stream", "wait_event", "wait_stream") if w in text]
    assert not found, f"{key} uses {found}"
