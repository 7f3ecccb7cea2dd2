"""Rich display in Jupyter: a Suggestion, a History and a Verification render as small escaped HTML tables."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pytest

from lr_finder import LRFinder
from lr_finder.history import History
from lr_finder.suggestion import Suggestion, analyze
from lr_finder.verify import Trial, Verification

from tasks import digits_mlp

RT = {"show_progress": False}


class _Cells(HTMLParser):
    """The text of each <th>/<td> cell of an HTML fragment, in order; also checks that tags balance."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[str] = []
        self.open: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.open.append(tag)
        if tag in ("th", "td"):
            self.cells.append("")
            self._in = True

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}> in {self.open}"
        self.open.pop()
        if tag in ("th", "td"):
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.cells[-1] += data


def cells(fragment: str) -> dict[str, str]:
    """{header: value} of a two-column table."""
    p = _Cells()
    p.feed(fragment)
    p.close()
    assert not p.open, f"unclosed tags {p.open}"
    return dict(zip(p.cells[::2], p.cells[1::2], strict=True))


@pytest.fixture(scope="module")
def finder() -> LRFinder:
    t = digits_mlp()
    f = LRFinder(t.model, t.optimizer, t.criterion)
    f.range_test(t.loader, start_lr=1e-5, end_lr=10, num_iter=60, **RT)
    f.verify(t.loader, steps=10)
    return f


def test_a_real_suggestion_shows_its_lr_range_confidence_method_and_diagnostics(finder):
    s = finder.suggestion()
    assert s.lr is not None
    shown = cells(s._repr_html_())
    assert list(shown)[:4] == ["LR", "range", "confidence", "method"]
    assert shown["LR"] == f"{s.lr:.3e}"
    assert shown["range"].startswith(f"{s.low:.2e} to {s.high:.2e} (pick {s.position})")
    assert shown["confidence"] == f"{s.confidence:.2f} ({s.confidence_label})"
    assert shown["method"] == "backoff"
    assert shown["basis"] == s.basis
    for note in s.diagnostics:
        assert note in shown["diagnostics"]
    if not s.diagnostics:
        assert shown["diagnostics"] == "none"


def test_no_suggestion_shows_none_and_the_reason_once():
    flat = analyze(np.logspace(-5, 0, 60), np.full(60, 2.3) + np.random.default_rng(0).normal(0, 0.1, 60))
    assert flat.lr is None and flat.reason
    html = flat._repr_html_()
    shown = cells(html)
    assert shown["LR"] == "none" and shown["reason"] == flat.reason
    assert shown["confidence"] == "0.00 (none)"
    assert shown["diagnostics"] == "none"  # the reason is the only diagnostic: not repeated
    assert html.count("loss never decreased") == 1


def test_html_special_characters_in_a_diagnostic_or_reason_are_escaped():
    evil = "<script>alert('x')</script> & <b>loss</b> \"quoted\""
    s = Suggestion(1e-3, "backoff<i>", 1e-4, 1e-2, 0.5, None, (evil,), basis="a < b & c > d")
    html = s._repr_html_()
    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "&amp; &lt;b&gt;loss&lt;/b&gt;" in html
    shown = cells(html)  # the parser decodes the escapes back: the text reads as written
    assert evil in shown["diagnostics"]
    assert shown["basis"] == "a < b & c > d"
    assert shown["method"] == "backoff<i>"
    none = Suggestion(None, "backoff", reason="x < y & <z>", diagnostics=("x < y & <z>",))
    assert "<z>" not in none._repr_html_() and cells(none._repr_html_())["reason"] == "x < y & <z>"


def test_a_real_history_shows_a_summary_never_its_columns(finder):
    h = finder.history
    html = h._repr_html_()
    shown = cells(html)
    assert list(shown) == ["steps", "LR span", "best loss", "stop reason"]
    assert shown["steps"] == str(h.num_steps)
    assert shown["LR span"] == f"{h.lr[0]:.2e} to {h.lr[-1]:.2e}"
    best = min(v for v in h.raw_loss if math.isfinite(v))
    assert shown["best loss"].startswith(f"{best:.4g} (raw, at LR ")
    assert shown["stop reason"] == (h.stop_reason or "ran all steps")
    assert len(html) < 1000  # a summary, whatever the number of steps
    assert repr(h.lr[len(h.lr) // 2]) not in html


def test_a_history_that_stopped_escapes_its_reason_and_skips_non_finite_losses():
    h = History((1e-3, 1e-2, 1e-1), (2.0, 1.5, 9.0), (2.0, 1.0, math.nan), stop_reason="loss <nan> & gone")
    shown = cells(h._repr_html_())
    assert shown["stop reason"] == "loss <nan> & gone"
    assert "<nan>" not in h._repr_html_()
    assert shown["best loss"] == "1 (raw, at LR 1.00e-02)"
    empty = cells(History()._repr_html_())
    assert empty["steps"] == "0" and empty["best loss"] == "\u2013" and empty["LR span"] == "\u2013"


def test_a_real_verification_shows_every_trial_and_marks_the_pick(finder):
    v = finder.verification
    assert v is not None and v.trials
    html = v._repr_html_()
    p = _Cells()
    p.feed(html)
    assert not p.open
    assert f"LR {v.lr:.3e}" in html and f"{v.extra_steps} extra steps" in html
    rows = [p.cells[i : i + 4] for i in range(4, len(p.cells), 4)]
    assert [r[0].rstrip(" \u2190") for r in rows] == [f"{t.lr:.3e}" for t in v.trials]
    assert sum(r[0].endswith("\u2190") for r in rows) == 1


def test_a_failed_verification_escapes_its_problems():
    v = Verification(None, 1e-2, (Trial(1e-2, math.inf, 0.0, 3, "unstable: <diverged> & more"),), "no <luck>")
    html = v._repr_html_()
    assert "<diverged>" not in html and "<luck>" not in html and "LR none" in html
    assert "&lt;diverged&gt; &amp; more" in html and "&lt;luck&gt;" in html
