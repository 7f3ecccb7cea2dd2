"""The CSV log, best_lr.txt and atomic writes."""

import contextlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lr_finder import History, LRFinder, read_csv
from lr_finder import files as lf_files
from lr_finder.errors import InputError, StorageError
from lr_finder.files import (
    CSVFormatError,
    atomic_write,
    image_target,
    looks_like_image,
    make_dirs,
    parse_csv,
    write_best_lr,
    write_csv,
    write_json,
)

from tasks import digits_mlp


def test_csv_written_by_plot_parses_back_to_the_history(tmp_path):
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion, cache_dir=tmp_path / "out")
    f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=40, show_progress=False)
    lr = f.plot(save_path=tmp_path / "plots" / "lr_finder_plot.png")
    back = read_csv(tmp_path / "out" / "lr_finder_log.csv")
    assert back.lr == f.history.lr and back.loss == f.history.loss and back.raw_loss == f.history.raw_loss
    assert float((tmp_path / "out" / "best_lr.txt").read_text()) == lr
    header = (tmp_path / "out" / "lr_finder_log.csv").read_text().splitlines()[0]
    assert header == "step,lr,raw_loss,loss"


def test_outputs_go_beside_the_plot_without_cache_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=30, show_progress=False)
    f.plot(save_path="plots/lr_finder_plot.png")
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {
        "lr_finder_plot.png", "lr_finder_log.csv", "best_lr.txt"}
    f.plot()  # no save_path: CSV and best LR into the working directory
    assert (tmp_path / "lr_finder_log.csv").exists() and (tmp_path / "best_lr.txt").exists()


def test_png_is_a_readable_image_of_sensible_size(tmp_path):
    import matplotlib.image as mpimg

    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=30, show_progress=False)
    f.plot(save_path=tmp_path / "p.png", save_csv=False)
    img = mpimg.imread(tmp_path / "p.png")
    h, w = img.shape[:2]
    assert 300 <= h <= 2000 and 400 <= w <= 3000
    assert img.std() > 0.05  # not a blank canvas


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("step,lr\n0,0.1\n", r"missing column\(s\) loss"),
        ("lr,loss\n0.1,abc\n", "'loss' holds 'abc', not a number"),
        ("lr,loss\n", "no rows"),
        ("lr,loss\n-1,2\n", "positive finite"),
        ("lr,loss\n0.1\n", "no value in column 'loss'"),
    ],
)
def test_malformed_csv_messages(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(CSVFormatError, match=match) as info:
        read_csv(p)
    assert str(p) in str(info.value)


def test_missing_file_is_a_csv_format_error(tmp_path):
    with pytest.raises(CSVFormatError, match="cannot read"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lr,raw_loss,loss\n0.1,nan,1\n", r"line 2: column 'raw_loss' holds nan; .* finite losses only"),
        ("lr,raw_loss,loss\n0.1,1,1\n0.2,2,inf\n", r"line 3: column 'loss' holds inf"),
        ("lr,loss\n0.2,1\n\n0.1,1\n", r"line 4: lr 0.1 is below the previous row's 0.2"),
    ],
)
def test_what_no_range_test_records_is_refused_naming_the_line(text, match):
    """The sweep stops before a non-finite loss and the LR only rises: anything else is not a log."""
    with pytest.raises(CSVFormatError, match=match):
        parse_csv(text, "log.csv")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("lrawsteploss,_0123456789.-einfa \n")), max_size=300))
def test_reader_never_raises_anything_but_its_own_error(text):
    try:
        h = parse_csv(text)
    except CSVFormatError:
        return
    assert len(h.lr) == len(h.loss) == len(h.raw_loss) > 0


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(st.floats(1e-9, 1e3), finite, finite), max_size=50))
def test_csv_round_trip_is_exact(rows):
    rows = sorted(rows, key=lambda r: r[0])  # a sweep's LR never falls
    h = History(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))
    if not rows:
        with pytest.raises(CSVFormatError):
            parse_csv(lf_files.history_to_csv(h))
        return
    back = parse_csv(lf_files.history_to_csv(h))
    assert back.lr == h.lr
    for a, b in ((back.loss, h.loss), (back.raw_loss, h.raw_loss)):
        assert [repr(x) for x in a] == [repr(x) for x in b]


def test_atomic_write_keeps_the_old_file_on_a_crash(tmp_path):
    target = tmp_path / "lr_finder_log.csv"
    target.write_text("the good file")

    def crash(fh):
        fh.write(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(StorageError, match="disk full") as info:
        atomic_write(target, crash)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)  # the user's path, not ours
    assert target.read_text() == "the good file"
    assert os.listdir(tmp_path) == ["lr_finder_log.csv"]


def test_best_lr_txt_round_trip(tmp_path):
    write_best_lr(0.0007742636826811271, tmp_path / "best_lr.txt")
    assert float((tmp_path / "best_lr.txt").read_text()) == 0.0007742636826811271
    write_csv(History((0.1,), (1.0,), (1.0,)), tmp_path / "x" / "log.csv")
    assert (tmp_path / "x" / "log.csv").exists()


# -- permissions, paths and the errors that name them --------------------------------------------------


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def tested():
    """One real range test, shared by the tests that only plot and save it."""
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=25, show_progress=False)
    return f


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_every_output_file_gets_the_mode_open_would_give(tested, tmp_path, mask):
    with umask(mask):
        tested.plot(save_path=tmp_path / "out" / "lr_finder_plot.png", auto_reset=False)
        write_json({"a": 1}, tmp_path / "out" / "extra.json")
        with open(tmp_path / "plain.txt", "w") as fh:  # what users, web servers and pipelines expect
            fh.write("x")
    expected = mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~mask
    names = {p.name: mode(p) for p in (tmp_path / "out").iterdir()}
    assert set(names) == {"lr_finder_plot.png", "lr_finder_log.csv", "best_lr.txt", "lr_finder_summary.json",
                          "extra.json"}  # fmt: skip
    assert names == dict.fromkeys(names, expected)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
def test_a_replaced_file_keeps_its_own_mode(tmp_path):
    target = tmp_path / "best_lr.txt"
    target.write_text("0.1\n")
    os.chmod(target, 0o604)
    with umask(0o077):
        write_best_lr(0.25, target)
    assert mode(target) == 0o604 and float(target.read_text()) == 0.25


FORMATS = {"png", "svg", "pdf"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("p.png", "p.png"),
        ("p.SVG", "p.SVG"),
        ("out/", "out/lr_finder_plot.png"),
        ("a/b/", "a/b/lr_finder_plot.png"),
        ("existing", "existing/lr_finder_plot.png"),  # a folder that exists, written without the slash
        ("existing/c.pdf", "existing/c.pdf"),
    ],
)
def test_image_target_resolves_folders(tmp_path, monkeypatch, given, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    assert image_target(given, FORMATS) == Path(expected)


@pytest.mark.parametrize(
    ("given", "problem", "example"),
    [("plot", "has no file extension", "plot.png"), ("r.v2", "ends in .v2", "r.png")],
)
def test_image_target_refuses_a_name_that_is_not_an_image(given, problem, example):
    with pytest.raises(InputError, match=problem) as info:
        image_target(given, FORMATS)
    message = str(info.value)
    assert message.startswith(f"{given}:") and "pdf, png, svg" in message and f"such as {example} " in message


def test_plot_refuses_a_save_path_without_an_image_extension_before_drawing(tested, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="plot: has no file extension") as info:
        tested.plot(save_path="plot", auto_reset=False)
    assert "png" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no image, and no CSV written beside it


@pytest.mark.parametrize("given", ["out/", "existing"])
def test_plot_into_a_folder_writes_the_plot_and_files_there(tested, tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing").mkdir()
    tested.plot(save_path=given, auto_reset=False)
    folder = tmp_path / given.rstrip("/")
    assert {p.name for p in folder.iterdir()} == {
        "lr_finder_plot.png", "lr_finder_log.csv", "best_lr.txt", "lr_finder_summary.json"}  # fmt: skip
    assert looks_like_image(folder / "lr_finder_plot.png")


def test_a_folder_that_cannot_be_created_is_a_storage_error_naming_it(tested, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder must be")
    with pytest.raises(StorageError, match="is a file") as info:
        atomic_write(blocker / "sub" / "log.csv", lambda fh: fh.write(b"x"))
    assert str(blocker / "sub") in str(info.value)
    with pytest.raises(StorageError) as info:
        tested.plot(save_path=blocker / "p.png", auto_reset=False)
    assert str(blocker) in str(info.value) and ".tmp" not in str(info.value)
    with pytest.raises(StorageError, match="is a folder"):
        atomic_write(tmp_path, lambda fh: fh.write(b"x"))
    assert blocker.read_text() == "a file where a folder must be"


def test_make_dirs_returns_what_it_created(tmp_path):
    assert make_dirs(tmp_path / "a" / "b") == [tmp_path / "a", tmp_path / "a" / "b"]
    assert make_dirs(tmp_path / "a" / "b") == []


def test_looks_like_image(tmp_path):
    (tmp_path / "notes.png").write_text("my notes")
    (tmp_path / "empty.png").write_bytes(b"")
    assert not looks_like_image(tmp_path / "notes.png")
    assert looks_like_image(tmp_path / "empty.png")  # nothing to lose
    assert not looks_like_image(tmp_path / "missing.png")


def test_what_the_os_refuses_is_a_storage_error_naming_the_users_path_not_the_temp_file(tmp_path):
    too_long = "a" * 300  # longer than any file name the OS allows: refused even to root
    with pytest.raises(StorageError, match="cannot create the folder") as info:
        make_dirs(tmp_path / too_long / "sub")
    assert str(tmp_path / too_long / "sub") in str(info.value)
    target = tmp_path / f"{too_long}.csv"
    with pytest.raises(StorageError) as info:
        write_csv(History((0.1,), (1.0,), (1.0,)), target)
    assert str(info.value).startswith(f"cannot write {target}: ") and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_a_large_log_and_its_broken_copy_read_the_same_way_row_by_row(tmp_path):
    """A well-formed log takes the fast column-wise reader; the same log with one bad cell is read row by
    row and refused naming that line, so speed never costs the message."""
    import numpy as np

    lrs = np.logspace(-7, 1, 5000)
    loss = 2.0 + np.sin(np.arange(5000) / 50.0)
    h = History(tuple(lrs.tolist()), tuple(loss.tolist()), tuple((loss * 1.1).tolist()))
    path = write_csv(h, tmp_path / "log.csv")
    back = read_csv(path)
    assert back.lr == h.lr and back.loss == h.loss and back.raw_loss == h.raw_loss
    lines = path.read_text().splitlines()
    lines[3001] = lines[3001].rsplit(",", 1)[0] + ",nan"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(CSVFormatError, match="line 3002"):
        read_csv(tmp_path / "bad.csv")
