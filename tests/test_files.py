"""The CSV log, best_lr.txt and atomic writes."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lr_finder import History, LRFinder, read_csv
from lr_finder import files as lf_files
from lr_finder.files import CSVFormatError, atomic_write, parse_csv, write_best_lr, write_csv

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

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_text() == "the good file"
    assert os.listdir(tmp_path) == ["lr_finder_log.csv"]


def test_best_lr_txt_round_trip(tmp_path):
    write_best_lr(0.0007742636826811271, tmp_path / "best_lr.txt")
    assert float((tmp_path / "best_lr.txt").read_text()) == 0.0007742636826811271
    write_csv(History((0.1,), (1.0,), (1.0,)), tmp_path / "x" / "log.csv")
    assert (tmp_path / "x" / "log.csv").exists()
