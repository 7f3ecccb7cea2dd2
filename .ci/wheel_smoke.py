"""The package as users get it: build the sdist and the wheel, check them, install the wheel in a fresh virtual
environment with no source tree on its path, and use it there.

    python .ci/wheel_smoke.py --torch torch==2.13.0     # what `make test` runs

Checks, each failing the run: ``twine check --strict`` on both files; the wheel built from the sdist holds
the same files; in the fresh environment (torch pinned as given, then the wheel): ``lr_finder.__version__``
is the installed metadata's version, the README's quick start runs (on a tiny CPU model), ``lr-finder --help``
works from the entry point, ``lr_finder.compat`` imports, each integration without its extra says which extra
to install, mypy sees the package as typed (``py.typed``), and with each extra installed in turn
``lr-finder demo`` runs and the integration imports.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "lr-finder"
PASSED = [0]  # checks passed so far (a failed one ends the run)


def run(cmd: list[str], cwd: Path, what: str, expect_fail: bool = False) -> str:
    """Run ``cmd``; its output, or exit with a one-line reason (``expect_fail``: it must fail)."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    out = done.stdout + done.stderr
    if (done.returncode != 0) != expect_fail:
        sys.exit(f"wheel smoke FAILED: {what}\n$ {' '.join(cmd)}\n{out[-3000:]}")
    print(f"ok: {what}", flush=True)
    PASSED[0] += 1
    return out


def build(dist: Path, python: str) -> tuple[Path, Path]:
    run([python, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)], ROOT,
        "python -m build makes an sdist and a wheel")
    sdist, wheel = next(dist.glob("*.tar.gz")), next(dist.glob("*.whl"))
    run([python, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], ROOT, "twine check --strict")
    unpacked = dist / "sdist"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked, filter="data")
    again = dist / "from_sdist"
    run([python, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(again), str(next(unpacked.iterdir()))],
        ROOT, "the sdist builds a wheel")
    names = [sorted(zipfile.ZipFile(w).namelist()) for w in (wheel, next(again.glob("*.whl")))]
    if names[0] != names[1]:
        sys.exit(f"wheel smoke FAILED: the sdist's wheel differs: {sorted(set(names[0]) ^ set(names[1]))}")
    print("ok: the sdist builds the same wheel (same files)")
    return sdist, wheel


QUICK_START_OBJECTS = """
import torch
from torch.utils.data import DataLoader, TensorDataset
torch.manual_seed(0)
x = torch.randn(512, 8); y = (x[:, 0] > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
criterion = torch.nn.CrossEntropyLoss()
train_loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
"""


def quick_start() -> str:
    """The README's first Python block, run on a tiny model (on the CPU when there is no GPU)."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    if block is None:
        sys.exit("wheel smoke FAILED: the README has no ```python block for its quick start")
    code = block.group(1).replace('device="cuda"', 'device="cuda" if torch.cuda.is_available() else "cpu"')
    return QUICK_START_OBJECTS + "import matplotlib\nmatplotlib.use('Agg')\n" + code


def check_installed(env: Path, work: Path, wheel: Path, dev_python: str) -> None:
    py = str(env / "bin" / "python")
    version = run([py, "-c", "import importlib.metadata as m, lr_finder; print(lr_finder.__version__, "
                   f"m.version({NAME!r}), lr_finder.__file__)"], work, "import lr_finder from the wheel").split()
    if version[0] != version[1] or str(ROOT) in version[2]:
        sys.exit(f"wheel smoke FAILED: version {version[0]} vs metadata {version[1]}, imported from {version[2]}")
    print(f"ok: lr_finder {version[0]} from {version[2]}")
    (work / "quick_start.py").write_text(quick_start(), encoding="utf-8")
    run([py, "quick_start.py"], work, "the README's quick start runs")
    run([str(env / "bin" / "lr-finder"), "--help"], work, "lr-finder --help from the entry point")
    run([py, "-c", "import lr_finder.compat, lr_finder.tracking"], work, "lr_finder.compat and .tracking import")
    for extra, module in (("transformers", "transformers"), ("lightning", "lightning")):
        out = run([py, "-c", f"import lr_finder.integrations.{module}"], work,
                  f"lr_finder.integrations.{module} without its extra fails", expect_fail=True)
        if f"lr-finder[{extra}]" not in out:
            sys.exit(f"wheel smoke FAILED: the missing-extra error does not name lr-finder[{extra}]:\n{out[-1500:]}")
        print(f"ok: ... and names lr-finder[{extra}]")
    typed = "import lr_finder\n\nlr: float | None = lr_finder.analyze([1e-3, 1e-2], [1.0, 0.5]).lr\n"
    (work / "typed.py").write_text(typed, encoding="utf-8")
    run([dev_python, "-m", "mypy", "--no-incremental", "--python-executable", py, "typed.py"], work,
        "mypy sees py.typed in the installed package")
    for extra, check in (("demo", [str(env / "bin" / "lr-finder"), "demo", "--out", "demo", "--num-iter", "30",
                                   "--no-progress"]),
                         ("transformers", [py, "-c", "import lr_finder.integrations.transformers"]),
                         ("lightning", [py, "-c", "import lr_finder.integrations.lightning"])):
        run([py, "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]"], work, f"pip install the wheel[{extra}]")
        run(check, work, f"with [{extra}]: {' '.join(Path(c).name for c in check[:3])}")


def main() -> None:
    p = argparse.ArgumentParser(description=textwrap.dedent(__doc__ or "").split("\n\n")[0])
    p.add_argument("--torch", default="torch", help="the torch requirement for the fresh environment")
    args = p.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lr_finder_wheel_") as tmp:
        tmp_path = Path(tmp)
        _, wheel = build(tmp_path / "dist", sys.executable)
        env, work = tmp_path / "venv", tmp_path / "work"
        work.mkdir()
        venv.create(env, with_pip=True)
        pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        run(pip + [args.torch], work, f"pip install {args.torch} into a fresh venv")
        run(pip + [str(wheel)], work, f"pip install {wheel.name}")
        check_installed(env, work, wheel, sys.executable)
    print(f"wheel smoke: every check passed in {time.perf_counter() - start:.0f} s")
    print(f"smoke: {PASSED[0]} passed, 0 failed")  # the closing line CI reads, as a test runner's


if __name__ == "__main__":
    main()
