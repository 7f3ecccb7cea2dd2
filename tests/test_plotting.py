"""The plots: readable at a glance (zones, labelled suggestion, faint raw loss, sane y-limits), the slope
panel, the comparison overlay, and the images they make."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from lr_finder import History, LRFinder, analyze, files, plotting
from lr_finder.suggestion import prepare

from tasks import digits_mlp


def curve(n=80, drop_at=-3.0, blow_at=-0.5, noise=0.03, start=-6.0, end=1.0, explode=4.0, seed=0):
    """A synthetic range test: flat, a descent centred at 10**drop_at, an explosion past 10**blow_at."""
    lrs = np.logspace(start, end, n)
    x = np.log10(lrs)
    loss = 1.25 - 0.75 * np.tanh(2 * (x - drop_at)) + explode * np.maximum(0, x - blow_at) ** 2
    raw = loss * np.exp(np.random.default_rng(seed).normal(0, noise, n))
    return History(tuple(lrs), tuple(loss), tuple(raw))


def drawn(history, method="default", render=False, **kw):
    s = history.analyze(method)
    ax = plotting.draw(history, s, **kw)
    if render:
        FigureCanvasAgg(ax.figure).draw()  # lays the figure out, as saving it does
    return ax, s


def texts(ax):
    return [t.get_text() for t in ax.texts]


def test_the_plot_has_zones_a_labelled_suggestion_and_a_faint_raw_loss():
    ax, s = drawn(curve())
    assert s.lr is not None
    labels = [line.get_label() for line in ax.lines]
    raw, smooth = ax.lines[labels.index("raw loss")], ax.lines[labels.index("smoothed loss")]
    assert raw.get_alpha() <= 0.5 and raw.get_linewidth() < smooth.get_linewidth()
    assert ax.get_xscale() == "log"
    assert "learning rate" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    vlines = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == s.lr
    assert to_rgb(vlines[0].get_color()) == (1, 0, 0)
    assert any(f"{s.lr:.2e}" in t for t in texts(ax))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"too low", "optimal", "too high", "raw loss", "smoothed loss"} <= set(legend)
    spans = {p.get_label(): p for p in ax.patches}
    assert to_rgb(spans["optimal"].get_facecolor()) == to_rgb(plotting.ZONE_COLORS["optimal"])
    assert to_rgb(spans["too high"].get_facecolor()) == to_rgb(plotting.ZONE_COLORS["high"])


def test_y_limits_are_not_crushed_by_the_explosion():
    h = curve(explode=2e6)  # the loss ends near 1e6
    ax, _ = drawn(h)
    lo, hi = ax.get_ylim()
    loss = np.asarray(h.loss)
    descent = loss[0] - loss.min()
    assert hi < loss.max() / 1000
    assert descent / (hi - lo) > 0.4  # the descent fills a good part of the height (crushed: ~1e-6)
    assert lo <= loss.min() and hi >= loss[0]


def test_y_limits_leave_room_above_a_curve_that_never_diverges():
    lo, hi = plotting.y_limits(np.linspace(3.0, 1.0, 50))
    assert hi > 3.0 + 0.1 * 2.0 and lo < 1.0


@pytest.mark.parametrize(("drop_at", "blow_at"), [(0.6, 5.0), (-5.6, -4.0), (-3.0, -0.5)])
def test_the_annotation_stays_inside_the_figure(drop_at, blow_at):
    """A suggestion near the right edge puts its label on the left of its line, and the reverse."""
    ax, s = drawn(curve(drop_at=drop_at, blow_at=blow_at), render=True)
    assert s.lr is not None
    fig_box = ax.figure.bbox
    renderer = ax.figure.canvas.get_renderer()
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1, (text.get_text(), box, fig_box)
        assert box.y0 >= fig_box.y0 - 1 and box.y1 <= fig_box.y1 + 1


def test_notes_show_the_stop_reason_and_diagnostics_under_the_plot():
    h = curve(blow_at=5.0)  # never diverges: a diagnostic
    h = History(h.lr, h.loss, h.raw_loss, "diverged: test stop", {})
    ax, s = drawn(h)
    assert any("never diverged" in n for n in s.diagnostics)
    note = [t for t in texts(ax) if t.startswith("note:")]
    assert note and "stopped early: diverged: test stop" in note[0] and "never diverged" in note[0]
    assert "stopped early" in ax.get_title()


def test_the_slope_panel_shows_the_slope_the_suggestion_reads(tmp_path):
    h = curve()
    ax, s = drawn(h, "steepest", show_slope=True)
    axes = ax.figure.axes
    assert len(axes) == 2
    slope_ax = axes[1]
    c = prepare(h.lr, h.raw_loss)
    line = slope_ax.lines[1]  # after the zero line
    np.testing.assert_allclose(line.get_ydata(), c.grad)
    # the steepest suggestion is the slope's most negative point before the minimum
    assert s.lr == pytest.approx(c.lrs[int(np.argmin(c.grad[: c.imin + 1]))])
    assert "log10(LR)" in slope_ax.get_ylabel() and "ln(loss)" in slope_ax.get_ylabel()
    assert "learning rate" in slope_ax.get_xlabel() and ax.get_xlabel() == ""
    lo, hi = slope_ax.get_ylim()
    assert lo < c.grad.min() < 0 < hi < abs(c.grad.min())  # the rise after the minimum does not crush it
    plotting.save_figure(ax, tmp_path / "slope.png")
    assert matplotlib.image.imread(tmp_path / "slope.png").shape[:2] == (720, 800)


def test_negative_losses_and_empty_histories_draw():
    h = curve()
    neg = History(h.lr, tuple(v - 5 for v in h.loss), tuple(v - 5 for v in h.raw_loss))
    ax, s = drawn(neg, show_slope=True)
    assert s.lr is not None and "d loss" in ax.figure.axes[1].get_ylabel()
    ax, _ = drawn(History(), show_slope=True)
    assert "no points recorded" in texts(ax)


def test_compare_overlays_curves_with_their_suggestions(tmp_path):
    hs = [curve(drop_at=-3.0), curve(drop_at=-2.0, seed=1), curve(drop_at=-4.0, n=40, seed=2)]
    ss = [analyze(h.lr, h.loss) for h in hs]
    ax = plotting.draw_compare(hs, ss, ["a", "b", "c"], show_slope=True)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for name, s in zip("abc", ss, strict=True):
        assert f"{name}: {s.lr:.2e}" in legend
    assert "optimal range" in legend and "suggested LR" in legend
    dashed = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--")
    assert dashed == sorted(s.lr for s in ss)
    plotting.save_figure(ax, tmp_path / "cmp.svg")
    assert (tmp_path / "cmp.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="differ in length"):
        plotting.draw_compare(hs, ss[:2], ["a", "b", "c"])


@pytest.fixture(scope="module")
def finder():
    task = digits_mlp(n=256)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=30, show_progress=False)
    return f


def test_finder_plot_with_slope_writes_a_readable_image_and_the_files(finder, tmp_path):
    best = finder.plot(save_path=tmp_path / "p" / "plot.png", show_slope=True)
    img = matplotlib.image.imread(tmp_path / "p" / "plot.png")
    assert img.shape[:2] == (720, 800) and img[..., :3].std() > 0.05  # not blank
    summary = json.loads((tmp_path / "p" / files.SUMMARY_NAME).read_text())
    assert summary["suggestion"]["lr"] == best
    for key in ("lr_finder_version", "torch_version", "python_version", "device", "settings", "stop_reason",
                "timing", "optimal_range", "diagnostics", "methods", "analysis"):  # fmt: skip
        assert key in summary, key
    assert summary["settings"]["num_iter"] == 30 and summary["timing"]["elapsed_s"] > 0
    s = summary["suggestion"]
    assert summary["optimal_range"] == {"low": s["low"], "high": s["high"]}


def test_finder_plot_on_given_axes_appends_the_slope_panel(finder):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    finder.plot(ax=ax, save_csv=False, show_slope=True)
    assert len(fig.axes) == 2 and fig.axes[1].lines
    FigureCanvasAgg(fig).draw()
    loss_box, slope_box = ax.get_position(), fig.axes[1].get_position()
    assert slope_box.y1 <= loss_box.y0 and slope_box.y0 >= 0  # below the curve, inside the figure


def test_save_removes_a_stale_best_lr_when_there_is_no_suggestion(finder, tmp_path):
    (tmp_path / files.BEST_LR_NAME).write_text("0.1\n")
    ones = tuple(1.0 + 0 * v for v in finder.history.lr)
    flat = History(finder.history.lr, ones, ones)
    f = LRFinder(finder.model, finder.optimizer, finder.criterion)
    f.history = flat
    written = f.save(tmp_path)
    assert "best_lr" not in written and not (tmp_path / files.BEST_LR_NAME).exists()
    assert json.loads((tmp_path / files.SUMMARY_NAME).read_text())["suggestion"]["lr"] is None


def test_summarize_works_on_a_history_read_from_a_csv(finder, tmp_path):
    files.write_csv(finder.history, tmp_path / "log.csv")
    data = files.summarize(files.read_csv(tmp_path / "log.csv"), "valley")
    assert data["suggestion"] == finder.suggestion("valley").to_dict()
    assert data["settings"] == {} and data["timing"]["elapsed_s"] is None
