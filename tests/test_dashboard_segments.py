"""The dashboard's segment view, rendered from a real read-out of simulated counts."""

from __future__ import annotations

import json

import numpy as np
import panel as pn
import pytest

from workbench import segment_sim, segments
from workbench.dashboard_segments import segments_view

SIZES = [40, 200, 800, 3000, 6000]
NAMES = [f"s{i}" for i in range(len(SIZES))]


@pytest.fixture(scope="module")
def readout():
    """Arm ``b`` 0.5 log-odds above control ``a`` in every segment, arm ``c`` equal."""
    successes, trials = segment_sim.simulate(np.random.default_rng(5), [0.5, 0.0],
                                             sizes=SIZES, arms=3)
    return segments.read_out(0, successes, trials, segments=NAMES, arms=["a", "b", "c"],
                             fit=segments.sampler(warmup=200, samples=300))


def _pane(view, name: str):
    found = view.select(lambda o: getattr(o, "name", None) == name)
    assert len(found) == 1, f"{len(found)} panes named {name!r}"
    return found[0]


def _names(view) -> set[str]:
    return {o.name for o in view.select(pn.viewable.Viewable)}


def _interval(effect) -> str:
    mean, lo, hi = (100 * v for v in effect.rate_diff)
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _call(effect) -> str:
    return "winner" if effect.winner else "loser" if effect.loser else ""


def test_the_table_has_one_row_per_segment_and_treatment_arm_with_the_readouts_numbers(
        readout):
    view = segments_view(readout, attribute="country")
    assert view[0].object == "### Segments by `country`"
    table = _pane(view, "segments-table").value
    assert len(table) == len(SIZES) * 2 == len(readout.effects)
    assert list(zip(table.segment, table.arm, strict=True)) == [
        (s, arm) for s in NAMES for arm in ("b", "c")]
    for row, e in zip(table.to_dict("records"), readout.effects, strict=True):
        assert (row["trials"], row["control trials"]) == (e.trials, e.control_trials)
        assert row["pooled (points)"] == _interval(e.pooled)
        assert row["unpooled (points)"] == _interval(e.unpooled)
        assert row["P(effect > 0) pooled"] == round(e.pooled.prob_positive, 3)
        assert row["P(effect > 0) unpooled"] == round(e.unpooled.prob_positive, 3)
        assert (row["pooled call"], row["unpooled call"]) == (_call(e.pooled),
                                                              _call(e.unpooled))
    # the planted effect is found in the large segments, and arm c wins nowhere pooled
    assert set(table["pooled call"][(table.arm == "b") & (table.trials >= 3000)]) == {"winner"}
    assert "winner" not in set(table["pooled call"][table.arm == "c"])
    overall = _pane(view, "segments-overall").object
    d = readout.overall[0]["d"]
    assert f"**Overall (b vs a)**: log-odds {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" in overall
    assert "0.95" in _pane(view, "segments-about").object
    assert "segments-empty" not in _names(view)


def test_the_forest_plot_draws_both_read_outs_offset_and_the_overall_effect(readout):
    import holoviews as hv

    layout = _pane(segments_view(readout, attribute="country"), "segments-plot").object
    assert isinstance(layout, hv.Layout) and len(layout) == 2  # one per treatment arm
    for overlay, arm in zip(layout, ("b", "c"), strict=True):
        effects = [e for e in readout.effects if e.arm == arm]
        scatters = {el.label: el for el in overlay if isinstance(el, hv.Scatter)}
        assert set(scatters) == {"pooled", "unpooled"}
        for name, el in scatters.items():
            means = el.dframe()
            expected = [100 * getattr(e, name).rate_diff[0] for e in effects]
            np.testing.assert_allclose(means["mean"], expected)
            rows = len(SIZES) - 1 - np.arange(len(SIZES))  # first segment on top
            offset = -0.18 if name == "pooled" else 0.18
            np.testing.assert_allclose(means["y"], rows + offset)
        intervals = [el for el in overlay if isinstance(el, hv.Segments)]
        pooled_lo = intervals[0].dframe()["lo"]
        np.testing.assert_allclose(pooled_lo, [100 * e.pooled.rate_diff[1] for e in effects])
        lines = [el.data for el in overlay if isinstance(el, hv.VLine)]
        weights = [e.trials + e.control_trials for e in effects]
        overall = np.average([100 * e.pooled.rate_diff[0] for e in effects], weights=weights)
        assert lines == [0, pytest.approx(overall)]
        assert overlay.opts.get().kwargs["title"].startswith(f"{arm} − a:")


def test_the_dict_form_served_over_http_renders_the_same(readout):
    served = json.loads(json.dumps(readout.to_dict()))  # tuples arrive as lists
    views = [segments_view(r, attribute="plan") for r in (readout, readout.to_dict(), served)]
    tables = [_pane(v, "segments-table").value for v in views]
    for other in tables[1:]:
        assert other.equals(tables[0])
    texts = {_pane(v, "segments-overall").object for v in views}
    assert len(texts) == 1


def test_without_a_readout_the_view_says_what_to_configure():
    view = segments_view(None, attribute="")
    empty = _pane(view, "segments-empty").object
    assert "`segment_by`" in empty and "`attributes`" in empty and "/predict" in empty
    assert not {"segments-table", "segments-plot"} & _names(view)
    view = segments_view({"control": "a", "threshold": 0.95, "effects": [], "overall": [],
                          "diagnostics": {}}, attribute="country")
    assert "`country`" in _pane(view, "segments-empty").object
    assert not {"segments-table", "segments-plot"} & _names(view)


def test_divergences_in_the_pooled_fit_are_flagged(readout):
    for divergences in (7, 0):
        data = readout.to_dict() | {"diagnostics": {"divergences": divergences}}
        text = _pane(segments_view(data, attribute="x"), "segments-overall").object
        assert ("**7 divergent transitions**" in text) == (divergences == 7)
        assert ("divergent" in text) == (divergences > 0)
