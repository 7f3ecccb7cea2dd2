"""The ``lr-finder`` command: run, analyze, compare end to end in real processes on real data; exit codes."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import torch
from click.testing import CliRunner

from lr_finder import files, read_csv
from lr_finder.cli import cli
from lr_finder.schedule import STEP_MODES
from lr_finder.settings import DEFAULTS
from lr_finder.suggestion import DEFAULT_METHOD

from tasks import digits_tensors

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SPEC = ROOT / "examples" / "digits_spec.py"
PLOT_PX = (500, 800)  # rows, columns of a plot without the slope panel
SLOPE_PX = (720, 800)

# A SPEC whose data is the digits saved by the test (the subprocess need not import scikit-learn).
SPEC_SOURCE = """
import torch
from torch.utils.data import DataLoader, TensorDataset

DATA = {data!r}


def build(batch_size=32, optimizer="sgd", seed=0):
    x, y = torch.load(DATA, weights_only=True)
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt, torch.nn.CrossEntropyLoss(), loader
"""


def lr_finder_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console command, in a fresh interpreter, one CPU thread."""
    exe = Path(sys.executable).with_name("lr-finder")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from lr_finder.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def _forked_main(args: tuple[str, ...], cwd: str, out: str, err: str) -> None:
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - flushed by multiprocessing at exit
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    sys.argv = ["lr-finder", *args]
    from lr_finder.cli import main

    main()


def lr_finder_forked(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lr-finder ARGS`` in a child process forked from this one: a real process (its own exit status,
    stdout and stderr, ``main()`` as the console script calls it) without paying torch's import again.
    Falls back to a fresh interpreter where fork is unavailable."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return lr_finder_cmd(*args, cwd=cwd)
    out, err = cwd / ".stdout", cwd / ".stderr"
    proc = multiprocessing.get_context("fork").Process(
        target=_forked_main, args=(args, str(cwd), str(out), str(err))
    )
    proc.start()
    proc.join(180)
    result = subprocess.CompletedProcess(args, proc.exitcode, out.read_text(), err.read_text())
    out.unlink()
    err.unlink()
    return result


def image_shape(path: Path) -> tuple[int, int]:
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img.shape[0], img.shape[1]


def one_line_error(text: str) -> str:
    """The error output is one line, without a traceback."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spec")
    x, y = digits_tensors(384)
    torch.save((x, y), folder / "digits.pt")
    path = folder / "digits_task.py"
    path.write_text(SPEC_SOURCE.format(data=str(folder / "digits.pt")))
    return path


@pytest.fixture(scope="module")
def run_dir(spec_file, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One real ``lr-finder run`` in a subprocess, shared by the tests that read its outputs."""
    cwd = tmp_path_factory.mktemp("run")
    proc = lr_finder_cmd(
        "run", f"{spec_file}:build", "--start-lr", "1e-5", "--end-lr", "10", "--num-iter", "40",
        "--out", "out", "--no-progress", cwd=cwd,
    )  # fmt: skip
    return cwd / "out", proc


@pytest.fixture(scope="module")
def example_run(tmp_path_factory) -> tuple[Path, Any]:
    """``lr-finder run examples/digits_spec.py:build`` in-process (Adam, valley method, slope panel)."""
    out = tmp_path_factory.mktemp("example") / "o"
    path = list(sys.path)
    try:
        res = CliRunner().invoke(
            cli,
            ["run", f"{EXAMPLE_SPEC}:build", "-p", "n=256", "-p", "hidden=32", "-p", "optimizer='adam'",
             "--start-lr", "1e-5", "--end-lr", "10", "--num-iter", "30", "--out", str(out),
             "--method", "valley", "--no-progress", "--slope"],
        )  # fmt: skip
    finally:
        sys.path[:] = path
    return out, res


@pytest.fixture(scope="module")
def second_csv(example_run) -> Path:
    """A second real curve (Adam), written by the example run."""
    out, res = example_run
    assert res.exit_code == 0, res.output
    return out / files.CSV_NAME


# -- run ---------------------------------------------------------------------------------------------------


def test_run_prints_the_suggestion_and_writes_every_output(run_dir):
    out, proc = run_dir
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Suggested learning rate: ")
    printed = float(first.split(": ")[1])
    best = float((out / files.BEST_LR_NAME).read_text())
    assert math.isclose(printed, best, rel_tol=1e-3)
    summary = json.loads((out / files.SUMMARY_NAME).read_text())
    assert summary["suggestion"]["lr"] == best
    assert summary["suggestion"]["method"] == DEFAULT_METHOD
    assert summary["settings"]["num_iter"] == 40 and summary["settings"]["start_lr"] == 1e-5
    assert summary["settings"]["spec"].endswith("digits_task.py:build")
    assert summary["lr_finder_version"] and summary["torch_version"] == torch.__version__
    assert summary["device"] == "cpu"
    assert summary["timing"]["elapsed_s"] > 0 and summary["timing"]["s_per_step"] > 0
    assert set(summary["methods"]) >= {"steepest", "valley", "minimum"}
    low, high = summary["optimal_range"]["low"], summary["optimal_range"]["high"]
    assert 1e-5 <= low <= high <= 10 and 1e-5 <= best <= 10  # the range is the fast descent; the pick may lie off it
    assert summary["suggestion"]["position"] == ("below" if best < low else "above" if best > high else "inside")
    assert isinstance(summary["diagnostics"], list)
    assert "stop_reason" in summary and "stopped_early" in summary
    history = read_csv(out / files.CSV_NAME)
    assert history.num_steps == summary["steps_recorded"] > 5
    assert image_shape(out / files.PLOT_NAME) == PLOT_PX


#: A sweep of the SPEC that stops short of divergence: a suggestion with a diagnostic ("loss never diverged").
NOT_DIVERGING = ("--start-lr", "1e-3", "--end-lr", "1", "--num-iter", "30")


def test_run_json_gives_the_analysis_once(spec_file, tmp_path):
    """The JSON holds the suggestion and the diagnostics: stderr, the progress, does not repeat them."""
    args = ("run", f"{spec_file}:build", *NOT_DIVERGING, "--out", "o", "--no-progress", "--json")
    proc = lr_finder_cmd(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    notes = summary["diagnostics"]
    assert notes  # a sweep that stops short of divergence: "loss never diverged"
    for note in notes:
        assert note not in proc.stderr
    assert "Suggested Learning Rate" not in proc.stderr
    assert "LR range test complete" in proc.stderr  # the progress, as before


def test_run_text_gives_each_diagnostic_once(runner, spec_file, tmp_path):
    res = runner.invoke(cli, ["run", f"{spec_file}:build", *NOT_DIVERGING, "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    notes = json.loads((tmp_path / files.SUMMARY_NAME).read_text())["diagnostics"]
    assert notes
    for note in notes:
        assert (res.stdout + res.stderr).count(note) == 1, (note, res.stdout, res.stderr)
    assert res.stdout.count(f"  note: {notes[0]}") == 1
    assert "LR range test complete" in res.stderr and "`.plot()`" not in res.stderr
    assert "Suggested Learning Rate" not in res.stderr  # the report's first line says it


def test_run_shows_the_progress_on_stderr_without_the_api_hints(runner, spec_file, tmp_path):
    """The command configures logging itself: the library's messages on stderr, less the hints for users of the
    Python API (no ``.plot()`` to call, no model to be restored here)."""
    res = runner.invoke(cli, ["run", f"{spec_file}:build", "--num-iter", "10", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code in (0, 1), res.output
    assert "LR range test complete." in res.stderr and "saved to" in res.stderr
    assert "`.plot()`" not in res.stderr and "restored" not in res.stderr


def test_run_quiet_shows_no_progress_messages(runner, spec_file, tmp_path):
    res = runner.invoke(cli, ["run", f"{spec_file}:build", "--num-iter", "10", "--out", str(tmp_path), "-q"])
    assert res.exit_code in (0, 1), res.output
    assert "LR range test complete" not in res.stderr and "saved to" not in res.stderr


def test_analyze_of_a_run_csv_gives_the_same_suggestion(run_dir, tmp_path):
    out, run_proc = run_dir
    assert run_proc.returncode == 0, run_proc.stderr
    proc = lr_finder_forked(
        "analyze", str(out / files.CSV_NAME), "--out", "again", "--json", "--slope", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    run_summary = json.loads((out / files.SUMMARY_NAME).read_text())
    assert printed["suggestion"] == run_summary["suggestion"]
    assert printed["methods"] == run_summary["methods"]
    assert printed["stop_reason"] == run_summary["stop_reason"]  # read from the run's summary beside the CSV
    again = tmp_path / "again"
    assert float((again / files.ANALYSIS_BEST_LR_NAME).read_text()) == run_summary["suggestion"]["lr"]
    assert json.loads((again / files.ANALYSIS_JSON_NAME).read_text())["suggestion"] == run_summary["suggestion"]
    assert image_shape(again / files.ANALYSIS_PLOT_NAME) == SLOPE_PX
    assert sorted(p.name for p in again.iterdir()) == sorted(
        [files.ANALYSIS_PLOT_NAME, files.ANALYSIS_BEST_LR_NAME, files.ANALYSIS_JSON_NAME]
    )


def test_analyze_in_the_run_folder_never_rewrites_the_runs_files(run_dir, tmp_path):
    out, run_proc = run_dir
    assert run_proc.returncode == 0, run_proc.stderr
    run = tmp_path / "run"
    run.mkdir()
    for name in (files.CSV_NAME, files.BEST_LR_NAME, files.PLOT_NAME, files.SUMMARY_NAME):
        (run / name).write_bytes((out / name).read_bytes())
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    run_summary = json.loads(before[files.SUMMARY_NAME])
    res = CliRunner().invoke(cli, ["analyze", str(run / files.CSV_NAME), "--method", "minimum"])
    assert res.exit_code == 0, res.output
    assert {n: (run / n).read_bytes() for n in before} == before  # best_lr.txt still agrees with the summary
    assert float((run / files.BEST_LR_NAME).read_text()) == run_summary["suggestion"]["lr"]
    minimum = run_summary["methods"]["minimum"]["lr"]
    assert minimum != run_summary["suggestion"]["lr"]  # the analysis differs, so a rewrite would show
    assert float((run / files.ANALYSIS_BEST_LR_NAME).read_text()) == minimum
    assert image_shape(run / files.ANALYSIS_PLOT_NAME) == PLOT_PX


def test_compare_overlays_curves_with_a_legend(run_dir, second_csv, tmp_path):
    out, run_proc = run_dir
    assert run_proc.returncode == 0, run_proc.stderr
    proc = lr_finder_forked(
        "compare", str(out / files.CSV_NAME), str(second_csv), "--out", "cmp.png", "--labels", "sgd,adam",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert image_shape(tmp_path / "cmp.png") == PLOT_PX
    lines = proc.stdout.splitlines()
    assert lines[0].split()[0] == "sgd" and lines[1].split()[0] == "adam"
    best = float((out / files.BEST_LR_NAME).read_text())
    assert math.isclose(float(lines[0].split()[1]), best, rel_tol=1e-3)


def test_a_malformed_csv_exits_2_with_one_line_in_a_real_process(tmp_path):
    (tmp_path / "bad.csv").write_text("step,lr,raw_loss,loss\n0,0.001,2.3,two\n")
    proc = lr_finder_forked("analyze", "bad.csv", cwd=tmp_path)
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "bad.csv" in line and "'two'" in line and "not a number" in line
    assert not (tmp_path / files.PLOT_NAME).exists()


# -- in-process: the same commands through click's runner (fast) --------------------------------------------


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    """Click's runner; the SPEC folders the command puts on sys.path are taken off afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    return CliRunner()


def test_run_the_example_spec_with_params_method_and_slope(example_run):
    out, res = example_run
    assert res.exit_code == 0, res.output
    summary = json.loads((out / files.SUMMARY_NAME).read_text())
    assert summary["suggestion"]["method"] == "valley"
    assert summary["settings"]["spec_params"] == {"n": 256, "hidden": 32, "optimizer": "adam"}
    assert float((out / files.BEST_LR_NAME).read_text()) == summary["methods"]["valley"]["lr"]
    assert f"Suggested learning rate: {summary['suggestion']['lr']:.3e}" in res.stdout
    assert image_shape(out / files.PLOT_NAME) == SLOPE_PX


def test_run_accepts_a_tuple_spec_and_prints_json(runner, tmp_path):
    res = runner.invoke(
        cli,
        ["run", f"{EXAMPLE_SPEC}:build_tuple", "-p", "batch_size=128", "--num-iter", "8", "--out",
         str(tmp_path), "--json", "-q"],
    )  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    data = json.loads(res.stdout)
    assert data["steps_recorded"] == 8 and data["settings"]["spec_params"] == {"batch_size": 128}


MALFORMED = {
    "empty": ("", "empty"),
    "missing column": ("step,lr\n0,0.001\n1,0.002\n", "missing column(s) loss"),
    "text in a number": ("step,lr,raw_loss,loss\n0,0.001,2.3,2.3\n1,abc,2.2,2.2\n", "'abc', not a number"),
    "nan loss": ("step,lr,raw_loss,loss\n0,0.001,2.3,2.3\n1,0.002,nan,nan\n2,0.003,2.1,2.2\n", "nan"),
    "nan lr": ("step,lr,raw_loss,loss\n0,nan,2.3,2.3\n", "positive finite"),
    "header only": ("step,lr,raw_loss,loss\n", "no rows"),
    "lr going down": ("step,lr,raw_loss,loss\n0,0.01,2.3,2.3\n1,0.001,2.2,2.2\n", "below the previous"),
    "empty cell": ("step,lr,raw_loss,loss\n0,0.001,,2.3\n", "not a number"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("command", ["analyze", "compare"])
def test_malformed_csv_exits_2_naming_the_file_and_the_problem(runner, tmp_path, case, command):
    text, expected = MALFORMED[case]
    path = tmp_path / "log.csv"
    path.write_text(text)
    args = [command, str(path)] + (["--out", str(tmp_path / "c.png")] if command == "compare" else [])
    res = runner.invoke(cli, args)
    assert res.exit_code == 2, res.output
    line = one_line_error(res.stderr)
    assert str(path) in line and expected in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]  # nothing written


def test_unreadable_csv_exits_2(runner, tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    for args in (["analyze", str(tmp_path / "bin.csv")], ["analyze", str(tmp_path / "nope.csv")]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 2
        assert "csv" in one_line_error(res.stderr)


def test_analyze_of_a_csv_whose_lrs_repeat_says_how_many_rows_were_dropped_and_why(runner, tmp_path):
    rows = "".join(f"{i},0.001,{2.3 - i / 10},{2.3 - i / 10}\n" for i in range(3))
    (tmp_path / files.CSV_NAME).write_text("step,lr,raw_loss,loss\n" + rows)  # the LR never rose
    res = runner.invoke(cli, ["analyze", str(tmp_path / files.CSV_NAME)])
    assert res.exit_code == 1
    assert "1 of 3 points, dropped 2 with a repeated LR" in res.stderr and "one point per LR" in res.stderr


def test_analyze_without_a_suggestion_exits_1_and_removes_its_own_stale_best_lr(runner, tmp_path):
    rows = "".join(f"{i},{10 ** (-6 + i / 10)!r},{1 + i / 10},{1 + i / 10}\n" for i in range(30))
    (tmp_path / files.CSV_NAME).write_text("step,lr,raw_loss,loss\n" + rows)  # a loss that only rises
    (tmp_path / files.ANALYSIS_BEST_LR_NAME).write_text("0.1\n")  # from an earlier analysis
    (tmp_path / files.BEST_LR_NAME).write_text("0.2\n")  # the run's own: not analyze's to touch
    res = runner.invoke(cli, ["analyze", str(tmp_path / files.CSV_NAME)])
    assert res.exit_code == 1
    assert "no learning rate could be suggested" in res.stderr
    assert "No learning rate suggested" in res.stdout
    assert not (tmp_path / files.ANALYSIS_BEST_LR_NAME).exists()
    assert (tmp_path / files.BEST_LR_NAME).read_text() == "0.2\n"
    assert (tmp_path / files.ANALYSIS_PLOT_NAME).exists() and (tmp_path / files.ANALYSIS_JSON_NAME).exists()


def test_compare_never_overwrites_a_file_that_is_not_an_image(runner, second_csv, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    disguised = tmp_path / "data.png"
    disguised.write_text("not an image")
    for out in (notes, disguised, second_csv):
        res = runner.invoke(cli, ["compare", str(second_csv), "--out", str(out)])
        assert res.exit_code == 2, res.output
        assert str(out) in one_line_error(res.stderr)
    assert notes.read_text() == "keep me" and disguised.read_text() == "not an image"
    old = tmp_path / "old.png"
    res = runner.invoke(cli, ["compare", str(second_csv), "--out", str(old), "--slope"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["compare", str(second_csv), "--out", str(old)])  # an image may be replaced
    assert res.exit_code == 0, res.output
    assert image_shape(old) == PLOT_PX


def test_compare_label_count_must_match(runner, second_csv, tmp_path):
    res = runner.invoke(
        cli, ["compare", str(second_csv), "--labels", "a,b", "--out", str(tmp_path / "c.png")]
    )
    assert res.exit_code == 2
    assert "--labels has 2 label(s) for 1 CSV" in one_line_error(res.stderr)


BAD_SPEC = """
import torch

def three():
    return 1, 2, 3

def boom():
    raise RuntimeError("dataset missing")

def typo():
    m = torch.nn.Linear(2, 2)
    return {"model": m, "optimiser": torch.optim.SGD(m.parameters(), lr=0.1)}

def not_a_model():
    return "m", "o", "c", [1]

def bare_tensors():
    m = torch.nn.Linear(2, 2)
    return m, torch.optim.SGD(m.parameters(), lr=0.1), torch.nn.MSELoss(), [torch.zeros(4, 2)] * 3

def late_bad_batch():
    m = torch.nn.Linear(2, 2)
    good = (torch.zeros(4, 2), torch.zeros(4, 2))
    return m, torch.optim.SGD(m.parameters(), lr=0.1), torch.nn.MSELoss(), [good, good, good, torch.zeros(4, 2)]

def nan_targets():
    m = torch.nn.Linear(2, 2)
    batch = (torch.zeros(4, 2), torch.full((4, 2), float("nan")))
    return m, torch.optim.SGD(m.parameters(), lr=0.1), torch.nn.MSELoss(), [batch] * 3

def wrong_shape():
    m = torch.nn.Linear(2, 2)
    batches = [(torch.zeros(4, 3), torch.zeros(4, 2))] * 3
    return m, torch.optim.SGD(m.parameters(), lr=0.1), torch.nn.MSELoss(), batches
"""


@pytest.mark.parametrize(
    ("target", "extra", "code", "expected"),
    [
        ("nocolon", [], 2, "must be 'package.module:function'"),
        ("missing.py:build", [], 2, "missing.py: no such file"),
        ("no_such_package_xyz.mod:build", [], 2, "no module named 'no_such_package_xyz'"),
        ("{spec}:nothere", [], 2, "has no 'nothere'; its functions: bare_tensors, boom"),
        ("{spec}:three", [], 2, "returned a tuple of 3"),
        ("{spec}:typo", [], 2, "missing optimizer, criterion, train_loader; unknown key(s) optimiser"),
        ("{spec}:not_a_model", [], 2, "model must be a torch.nn.Module"),
        ("{spec}:bare_tensors", ["--num-iter", "5"], 2, "each batch must be (inputs, targets)"),
        ("{spec}:three", ["--end-lr", "1e-9"], 2, "end_lr=1e-09 must be greater than start_lr"),
        ("{spec}:three", ["--num-iter", "1"], 2, "num_iter=1 must be at least 2"),
        ("{spec}:three", ["-p", "batch=1"], 2, "unexpected keyword argument 'batch'"),
        ("{spec}:three", ["-p", "nokey"], 2, "expected KEY=VALUE"),
        ("{spec}:boom", [], 1, "raised RuntimeError: dataset missing (rerun with --traceback"),
        ("{spec}:wrong_shape", ["--num-iter", "5"], 1, "the range test raised RuntimeError"),
        # decided by the error's type, not by when or where it was raised: bad input found mid-sweep ...
        ("{spec}:late_bad_batch", ["--num-iter", "6"], 2, "each batch must be (inputs, targets)"),
        # ... and a range test that could not record a curve, which is no bug of the user's code
        ("{spec}:nan_targets", [], 1, "the range test failed: the loss was nan at the first step"),
    ],
)
def test_run_exit_codes_and_messages(runner, tmp_path, target, extra, code, expected):
    spec = tmp_path / "bad_spec.py"
    spec.write_text(BAD_SPEC)
    res = runner.invoke(cli, ["run", target.format(spec=spec), "--out", str(tmp_path / "o"), "-q", *extra])
    assert res.exit_code == code, res.output
    line = one_line_error(res.stderr)
    assert expected in line
    assert ("--traceback" in line) == ("raised" in expected)  # only the user's own code has a traceback to see
    assert not (tmp_path / "o").exists()  # a failed run leaves no empty --out folder behind


def test_a_missing_function_lists_only_the_modules_own_functions(runner, tmp_path):
    spec = tmp_path / "many_spec.py"
    own = [f"build_{i:02d}" for i in range(11)]
    spec.write_text(
        "from collections import OrderedDict\nfrom os.path import join\nfrom typing import Any\n\n"
        + "".join(f"def {name}():\n    pass\n\n" for name in own)
        + "class Task:\n    pass\n"
    )
    res = runner.invoke(cli, ["run", f"{spec}:nosuch", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    line = one_line_error(res.stderr)
    assert line.endswith(f"has no 'nosuch'; its functions: {', '.join(own[:8])} and 3 more")
    assert not {"OrderedDict", "join", "Any", "Task"} & set(line.replace(",", " ").split())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "SPEC 'os.path:join': join() requires the argument a: pass it with -p a=VALUE"),
        (["-p", "b=1"], "--param: join() does not accept them: got an unexpected keyword argument 'b'"),
        (["-p", "start=1"], "SPEC 'os.path:relpath': relpath() requires the argument path: pass it with -p path=VALUE"),
    ],
)
def test_a_spec_function_that_needs_arguments_says_which_and_how(runner, tmp_path, extra, expected):
    name = "relpath" if "start=1" in extra else "join"
    res = runner.invoke(cli, ["run", f"os.path:{name}", *extra, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert one_line_error(res.stderr) == f"Error: {expected}"


def test_run_traceback_flag_shows_the_users_traceback(runner, tmp_path):
    spec = tmp_path / "bad_spec.py"
    spec.write_text(BAD_SPEC)
    res = runner.invoke(cli, ["run", f"{spec}:boom", "--traceback", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "Traceback" in res.stderr and 'raise RuntimeError("dataset missing")' in res.stderr


def test_run_refuses_an_out_that_is_a_file(runner, tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    res = runner.invoke(cli, ["run", f"{EXAMPLE_SPEC}:build", "--out", str(target)])
    assert res.exit_code == 2
    assert "exists and is not a folder" in one_line_error(res.stderr)
    assert target.read_text() == "mine"


def test_run_finds_a_module_spec_in_the_working_folder(runner, tmp_path, monkeypatch):
    (tmp_path / "my_task_mod_for_cli.py").write_text(textwrap.dedent(BAD_SPEC))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    res = runner.invoke(cli, ["run", "my_task_mod_for_cli:three", "--out", "o"])
    assert res.exit_code == 2 and "returned a tuple of 3" in res.stderr
    sys.modules.pop("my_task_mod_for_cli", None)


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["analyze"], ["compare"]])
def test_every_command_has_help(runner, command):
    res = runner.invoke(cli, [*command, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


@pytest.mark.slow
def test_the_spec_workflow_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """examples/spec_workflow.py: the specification's Example Workflow on CPU (100 steps, all the digits)."""
    import runpy

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", ["spec_workflow.py"])
    runpy.run_path(str(ROOT / "examples" / "spec_workflow.py"), run_name="__main__")
    printed = capsys.readouterr().out
    best = float((tmp_path / "plots" / files.BEST_LR_NAME).read_text())
    assert f"Suggested LR: {best:.6f}" in printed
    assert image_shape(tmp_path / "plots" / files.PLOT_NAME) == PLOT_PX
    assert (tmp_path / "plots" / files.CSV_NAME).exists()


def test_a_spec_that_cannot_be_loaded_leaves_no_folder_behind(runner, tmp_path):
    for spec in (f"{tmp_path / 'missing.py'}:build", "no_such_package_xyz:build"):
        res = runner.invoke(cli, ["run", spec, "--out", str(tmp_path / "runs" / "a")])
        assert res.exit_code == 2, res.output
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "out"),
    [
        (["analyze", "{csv}"], "blocker/sub"),
        (["compare", "{csv}"], "blocker/c.png"),
        (["run", "{spec}:boom"], "blocker/sub"),  # refused before the SPEC runs (it would raise: exit 1)
    ],
)
def test_an_out_that_cannot_be_created_exits_2_in_one_line(runner, second_csv, tmp_path, command, out):
    (tmp_path / "blocker").write_text("a file where a folder must be")
    spec = tmp_path / "bad_spec.py"
    spec.write_text(BAD_SPEC)
    args = [a.format(csv=second_csv, spec=spec) for a in command]
    res = runner.invoke(cli, [*args, "--out", str(tmp_path / out)])
    assert res.exit_code == 2, res.output
    line = one_line_error(res.stderr)
    assert str(tmp_path / out) in line and ".tmp" not in line
    assert (tmp_path / "blocker").read_text() == "a file where a folder must be"


def test_compare_into_a_folder_writes_its_default_name_there(runner, second_csv, tmp_path):
    res = runner.invoke(cli, ["compare", str(second_csv), "--out", f"{tmp_path / 'figs'}/"])
    assert res.exit_code == 0, res.output
    assert image_shape(tmp_path / "figs" / files.COMPARE_NAME) == PLOT_PX
    res = runner.invoke(cli, ["compare", str(second_csv), "--out", str(tmp_path / "figs" / "c")])
    assert res.exit_code == 2
    assert "has no file extension" in one_line_error(res.stderr)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_command_outputs_get_the_mode_open_would_give(runner, second_csv, tmp_path):
    old = os.umask(0o027)
    try:
        res = runner.invoke(cli, ["analyze", str(second_csv), "--out", str(tmp_path / "a")])
        assert res.exit_code == 0, res.output
        res = runner.invoke(cli, ["compare", str(second_csv), "--out", str(tmp_path / "c.svg")])
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    written = [*(tmp_path / "a").iterdir(), tmp_path / "c.svg"]
    assert len(written) == 4
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: 0o640 for p in written}


def test_run_options_are_the_settings_defaults():
    params = {p.name: p for p in cli.commands["run"].params}
    shown = {name for name in DEFAULTS if name in params}
    assert shown == set(DEFAULTS) - {"non_blocking_transfer", "amp_dtype"}
    assert {name: params[name].default for name in shown} == {name: DEFAULTS[name] for name in shown}
    assert tuple(params["step_mode"].type.choices) == STEP_MODES


def test_run_flags_reach_the_settings(runner, tmp_path):
    res = runner.invoke(
        cli,
        ["run", f"{EXAMPLE_SPEC}:build_tuple", "-p", "batch_size=128", "--num-iter", "8", "--step-mode", "linear",
         "--no-amp", "--no-adaptive-stop", "--no-progress", "--out", str(tmp_path), "-q"],
    )  # fmt: skip
    assert res.exit_code in (0, 1), res.output
    settings = json.loads((tmp_path / files.SUMMARY_NAME).read_text())["settings"]
    assert settings["step_mode"] == "linear" and settings["num_iter"] == 8
    assert settings["use_amp"] is False and settings["adaptive_stop"] is False
    assert settings["show_progress"] is False
