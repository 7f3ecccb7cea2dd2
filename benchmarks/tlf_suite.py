"""Run torch-lr-finder's own test suite against lr_finder.compat (and, for reference, against torch-lr-finder).

    python benchmarks/tlf_suite.py PATH/TO/pytorch-lr-finder/tests
    make tlf-suite TLF_TESTS=PATH/TO/pytorch-lr-finder/tests

torch-lr-finder's tests are not in its wheel and are not shipped here: give the ``tests`` folder of a copy of
its repository (git clone, or the source archive of the release). Nothing is fetched. The folder is copied
into a temporary directory and only its import lines are changed, ``torch_lr_finder`` to
``lr_finder.compat``; the copy then runs with ``--cpu_only`` (when the suite's conftest has it) and
pytest-mock, and the script prints the counts for both runs and the tests that differ. The original suite
runs against the installed torch-lr-finder when it is importable (``--compat-only`` skips it).

Exit status: 0 when lr_finder.compat fails no test, 1 otherwise, 2 when the folder is not a test suite.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

#: ``from torch_lr_finder import X`` / ``from torch_lr_finder.lr_finder import (...)`` / ``import torch_lr_finder``
_IMPORTS = [
    (re.compile(r"^(\s*)from torch_lr_finder(?:\.lr_finder)? import", re.M), r"\1from lr_finder.compat import"),
    (re.compile(r"^(\s*)import torch_lr_finder(?:\.lr_finder)?\s*$", re.M),
     r"\1import lr_finder.compat as torch_lr_finder"),
]


def rewrite_imports(text: str) -> tuple[str, int]:
    """``text`` with its torch_lr_finder import lines pointed at lr_finder.compat, and how many changed.

    >>> rewrite_imports("import pytest\\nfrom torch_lr_finder.lr_finder import (\\n    TrainDataLoaderIter\\n)\\n")
    ('import pytest\\nfrom lr_finder.compat import (\\n    TrainDataLoaderIter\\n)\\n', 1)
    """
    count = 0
    for pattern, replacement in _IMPORTS:
        text, n = pattern.subn(replacement, text)
        count += n
    return text, count


def copy_suite(source: Path, dest: Path, to_compat: bool) -> int:
    """Copy the suite's Python files; with ``to_compat`` rewrite their imports. Returns the lines changed."""
    changed = 0
    for path in sorted(source.glob("*.py")):
        text = path.read_text()
        if to_compat:
            text, n = rewrite_imports(text)
            changed += n
        (dest / path.name).write_text(text)
    return changed


def run_pytest(folder: Path, cpu_only: bool, src: Path | None) -> dict[str, list[str]]:
    """Run pytest on ``folder``; the test ids by outcome (passed, failed, skipped)."""
    report = folder / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_mock",
           "--rootdir", str(folder), f"--junitxml={report}", str(folder)]
    if cpu_only:
        cmd.append("--cpu_only")
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if src is not None:  # this checkout's lr_finder, not an installed one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    subprocess.run(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not report.is_file():
        raise SystemExit(f"pytest wrote no report for {folder}: run it by hand to see why")
    outcomes: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("skipped") is not None:
            outcomes["skipped"].append(name)
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"].append(name)
        else:
            outcomes["passed"].append(name)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", type=Path, help="the tests folder of a copy of torch-lr-finder's repository")
    parser.add_argument("--compat-only", action="store_true", help="do not also run it against torch-lr-finder")
    args = parser.parse_args(argv)
    source = args.tests
    if not (source / "test_lr_finder.py").is_file():
        print(f"{source} has no test_lr_finder.py: give the tests folder of torch-lr-finder's repository")
        return 2
    if importlib.util.find_spec("pytest_mock") is None:
        print("the suite needs pytest-mock: pip install pytest-mock (it is in lr-finder's dev extra)")
        return 2
    cpu_only = "--cpu_only" in (source / "conftest.py").read_text() if (source / "conftest.py").is_file() else False
    src = Path(__file__).resolve().parent.parent / "src"
    runs = [("lr_finder.compat", True)]
    if not args.compat_only and importlib.util.find_spec("torch_lr_finder") is not None:
        runs.insert(0, ("torch_lr_finder (installed)", False))
    results = {}
    for label, to_compat in runs:
        with tempfile.TemporaryDirectory(prefix="tlf_suite_") as tmp:
            changed = copy_suite(source, Path(tmp), to_compat)
            if to_compat:
                print(f"import lines changed to lr_finder.compat: {changed}")
            results[label] = run_pytest(Path(tmp), cpu_only, src if to_compat else None)
    print(f"\ntorch-lr-finder's test suite ({source}){' with --cpu_only' if cpu_only else ''}\n")
    print("| run against | passed | failed | skipped |\n|---|---|---|---|")
    for label, out in results.items():
        print(f"| {label} | {len(out['passed'])} | {len(out['failed'])} | {len(out['skipped'])} |")
    ours = results["lr_finder.compat"]
    for name in ours["failed"]:
        print(f"FAILED with lr_finder.compat: {name}")
    return 1 if ours["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
