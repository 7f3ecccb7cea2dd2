"""The plots: readable at a glance (zones, labelled suggestion, faint raw loss, sane y-limits), the slope
panel, the comparison overlay, and the images they make."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from lr_finder import History, LRFinder, analyze, files, plotting, report
from lr_finder.suggestion import analyze_history, prepare

ZONE = plotting.ZONE_LABELS


def curve(n=80, drop_at=-3.0, blow_at=-0.5, noise=0.03, start=-6.0, end=1.0, explode=4.0, seed=0):
    """A synthetic range test: flat, a descent centred at 10**drop_at, an explosion past 10**blow_at."""
    lrs = np.logspace(start, end, n)
    x = np.log10(lrs)
    loss = 1.25 - 0.75 * np.tanh(2 * (x - drop_at)) + explode * np.maximum(0, x - blow_at) ** 2
    raw = loss * np.exp(np.random.default_rng(seed).normal(0, noise, n))
    return History(tuple(lrs), tuple(loss), tuple(raw))


def drawn(history, method="default", render=False, **kw):
    s = analyze_history(history, method)
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
    assert {*plotting.ZONE_LABELS.values(), "raw loss", "smoothed loss", "loss minimum"} <= set(legend)
    spans = {p.get_label(): p for p in ax.patches}
    for key in ("optimal", "high"):
        assert to_rgb(spans[ZONE[key]].get_facecolor()) == to_rgb(plotting.ZONE_COLORS[key])


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
    # the slope as far as the smoothed loss is drawn: past the explosion both stop
    np.testing.assert_allclose(line.get_ydata(), c.grad[: c.informative])
    assert c.informative < c.n
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
    data = report.summarize(files.read_csv(tmp_path / "log.csv"), "valley")
    assert data["suggestion"] == finder.suggestion("valley").to_dict()
    assert data["settings"] == {} and data["timing"]["elapsed_s"] is None


def _drawn(ax, label):
    return next(line for line in ax.lines if line.get_label() == label)


def test_the_slope_panel_moves_wherever_the_drawn_curve_moves():
    """The slope panel is the derivative of the smoothed loss drawn above it, over the same points: it is
    never flat at 0 where that curve clearly rises or falls."""
    h = curve(n=100, explode=40.0)
    ax, _ = drawn(h, show_slope=True)
    smooth_line = _drawn(ax, "smoothed loss")
    x, y = np.asarray(smooth_line.get_xdata(), float), np.asarray(smooth_line.get_ydata(), float)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    slope_line = ax.figure.axes[1].lines[1]
    np.testing.assert_allclose(slope_line.get_xdata(), x)
    moves = np.gradient(np.log(y), np.log10(x))
    clearly = np.abs(moves) > 0.2
    assert clearly.sum() > 10
    slope = np.asarray(slope_line.get_ydata())
    assert np.all(np.sign(slope[clearly]) == np.sign(moves[clearly]))
    assert np.all(np.abs(slope[clearly]) > 0.5 * np.abs(moves[clearly]))


def test_a_negative_log_likelihood_plots_from_observed_values_only():
    """Losses below zero that explode past their minimum: capped like any other, no ringing below the
    lowest loss observed, and a y axis that shows the descent instead of an artifact."""
    lrs = np.logspace(-6, 1, 100)
    x = np.log10(lrs)
    raw = -2.0 - 4.8 * (1 + np.tanh(2 * (x + 3))) + np.random.default_rng(0).normal(0, 0.3, 100)
    raw[85:] = np.geomspace(10, 1e5, 15)
    h = History(tuple(lrs), tuple(raw), tuple(raw), "diverged")
    ax, s = drawn(h, show_slope=True)
    assert s.lr is not None and "d loss" in ax.figure.axes[1].get_ylabel()
    smooth = np.asarray(_drawn(ax, "smoothed loss").get_ydata(), float)
    smooth = smooth[np.isfinite(smooth)]
    assert smooth.min() >= raw.min() - 1e-9 and smooth.max() <= raw.max()
    lo, hi = ax.get_ylim()
    assert lo >= raw.min() - 0.2 * (raw[:10].mean() - raw.min())
    assert (raw[:10].mean() - raw[:85].min()) / (hi - lo) > 0.6  # the descent fills the height


def test_red_means_the_loss_rises_after_its_minimum():
    h = curve(n=120, drop_at=-4.0, blow_at=-0.5, noise=0.01)
    slow = np.asarray(h.raw_loss) * np.exp(-0.08 * np.clip(np.log10(h.lr) + 4.0, 0.0, 3.5))
    h = History(h.lr, tuple(slow), tuple(slow))  # after the fast drop the loss keeps falling slowly
    ax, s = drawn(h, "steepest")
    smooth = smoothed_curve_of(ax)
    lr_min = float(np.asarray(h.lr)[int(np.nanargmin(smooth))])
    red = next(p for p in ax.patches if p.get_label() == ZONE["high"])
    assert red.get_x() >= lr_min * 10**-0.15 and s.high < lr_min / 10
    never = History(h.lr[:80], h.loss[:80], h.raw_loss[:80])
    ax, s = drawn(never)
    assert s.lr is not None and ZONE["high"] not in [p.get_label() for p in ax.patches]


def smoothed_curve_of(ax):
    return np.asarray(_drawn(ax, "smoothed loss").get_ydata(), float)


def test_a_loss_that_turns_nan_is_drawn_red_to_the_end():
    h = curve(n=100)
    raw = np.asarray(h.raw_loss)
    stop = int(np.argmin(raw)) + 4
    raw[stop:] = np.nan
    h = History(h.lr, tuple(raw), tuple(raw), "loss is nan")
    ax, s = drawn(h, show_slope=True)
    red = next(p for p in ax.patches if p.get_label() == ZONE["high"])
    assert red.get_x() + red.get_width() == pytest.approx(h.lr[-1])
    assert not any("never diverged" in t for t in texts(ax.figure.axes[1]))


def test_the_legend_never_covers_the_curve():
    for h in (curve(noise=0.3), curve(noise=0.03, drop_at=-5.0)):
        ax, _ = drawn(h, render=True)
        renderer = ax.figure.canvas.get_renderer()
        legend = ax.get_legend().get_window_extent(renderer)
        axes = ax.get_window_extent(renderer)
        assert legend.x0 >= axes.x1 or legend.y0 >= axes.y1 or legend.y1 <= axes.y0  # outside the axes
        assert legend.x1 <= ax.figure.bbox.x1 + 1  # and inside the figure


@pytest.mark.parametrize("layout", [None, "constrained", "tight"])
def test_slope_panel_on_a_callers_axes_keeps_the_x_label_inside(layout):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), layout=layout)
    ax = fig.add_subplot()
    h = curve()
    plotting.draw(h, analyze_history(h), ax, show_slope=True, notes=False)
    FigureCanvasAgg(fig).draw()
    slope_ax = fig.axes[1]
    label = slope_ax.xaxis.label.get_window_extent(fig.canvas.get_renderer())
    assert label.y0 >= 0 and slope_ax.get_position().y1 <= ax.get_position().y0 + 1e-9
    assert label.get_points().size and "learning rate" in slope_ax.get_xlabel()


def test_compare_slope_limits_hold_the_slopes_it_draws():
    """The compare plot's slope limits come from the curves its slope lines are drawn from (the raw loss),
    not from the EMA: with an EMA that says nothing, the descent's slope is still inside the axes."""
    hs = []
    for k, drop_at in enumerate((-3.0, -2.0)):
        h = curve(drop_at=drop_at, seed=k)
        hs.append(History(h.lr, tuple(2.0 for _ in h.lr), h.raw_loss))
    ss = [analyze_history(h) for h in hs]
    ax = plotting.draw_compare(hs, ss, ["a", "b"], show_slope=True)
    slope_ax = ax.figure.axes[1]
    lo, hi = slope_ax.get_ylim()
    for h in hs:
        c = prepare(h.lr, h.raw_loss)
        assert lo <= c.grad[: c.imin + 1].min() < 0 < hi


def test_the_pick_label_says_where_it_sits_and_why_and_zones_say_what_they_mean():
    """A backoff pick below the fast descent sits in yellow by design: the label says so, the legend does not
    call the zone "too low", and the range drawn green is the fast descent, not stretched to the pick."""
    lrs = np.logspace(-5, 1, 100)
    x = np.log10(lrs)
    loss = 2.3 - 0.55 * (1 + np.tanh(6 * (x + 0.7))) + 30 * np.maximum(0, x + 0.5) ** 2  # as the demo's
    ax, s = drawn(History(tuple(lrs), tuple(loss), tuple(loss)))
    assert s.position == "below"
    label = next(t for t in texts(ax) if t.startswith("suggested LR"))
    assert "loss minimum" in label and "safety margin" in label and "below the optimal range" in label
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "too low" not in legend and ZONE["low"] in legend
    green = next(p for p in ax.patches if p.get_label() == ZONE["optimal"])
    assert green.get_x() == pytest.approx(s.low) and s.lr < s.low  # the green zone starts at the range


def flat_then_diverged(n=48):
    lrs = np.logspace(-7, 1, 50)[:n]
    raw = 2.3 * np.exp(np.random.default_rng(4).normal(0, 0.03, n))
    raw[-5:] = [3.0, 6.0, 12.0, 30.0, 73.0]
    return History(tuple(lrs), tuple(raw), tuple(raw), "diverged: smoothed loss above the threshold")


def test_a_flat_sweep_that_diverged_shows_the_explosion_and_a_fallback_off_the_curve():
    h = flat_then_diverged()
    ax, s = drawn(h)
    assert s.fallback and s.lr is not None
    lo, hi = ax.get_ylim()
    assert hi > 2 * 2.3 and lo < 2.3  # the flat start reads flat, the rise shows
    [boom] = [t for t in texts(ax) if t.startswith("loss exploded")]
    first_off = next(lr for lr, v in zip(h.lr, h.raw_loss, strict=True) if v > hi)
    assert "73" in boom and f"from LR {first_off:.2e}" in boom
    red = next(p for p in ax.patches if p.get_label() == ZONE["high"])
    assert red.get_x() == pytest.approx(h.lr[-5]) and red.get_width() > 0
    [line] = [ln for ln in ax.lines if ln.get_label().startswith("fallback")]
    assert line.get_linestyle() == "-." and line.get_xdata()[0] == s.lr
    assert not [ln for ln in ax.lines if ln.get_marker() == "o"]  # no dot on the noise
    label = next(t for t in texts(ax) if t.startswith("suggested LR"))
    assert "fallback: stop LR" in label and "/ 40" in label
