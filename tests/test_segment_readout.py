"""Segments end to end, in process: a unit's attributes checked and logged with its
prediction, the binary metric folded by the configured attribute (in chunks, in memory,
through a prune), and the segment read-out's counts and unpooled effects against the
Beta-Binomial closed form."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import make_posterior
from scipy import stats

from workbench import (
    aggregates,
    arms,
    event_reads,
    events,
    folding,
    gateway,
    retention,
    segment_readout,
    store,
)
from workbench.aggregates import MAX_SEGMENTS, Fold, SegmentCounts
from workbench.config import parse
from workbench.errors import ConfigError, Conflict, InputError
from workbench.serving import ModelServer
from workbench.units import check_attributes
from workbench.writer import EventWriter

ROW = [[0.1, -0.2, 0.3, 0.0]]
ARMS = [{"name": "a", "model": "seg-b"}, {"name": "b", "model": "seg-b"}]
# outcomes per (country, arm): (successes, trials) the test feeds back
PLANTED = {"DE": {"a": (12, 40), "b": (20, 40)}, "FR": {"a": (3, 10), "b": (4, 12)},
           "US": {"a": (30, 60), "b": (33, 60)}}


@pytest.mark.parametrize(("bad", "message"), [
    ([1, 2], "must be an object"),
    ({f"k{i}": "v" for i in range(9)}, "too many attributes"),
    ({"bad name": "v"}, "invalid attribute name"),
    ({"country\n": "v"}, "invalid attribute name"),
    ({"country": None}, "invalid value"),
    ({"country": float("nan")}, "invalid value"),
    ({"country": "x" * 129}, "invalid value"),
    ({"country": "a\nb"}, "invalid value"),
    ({"country": {"nested": 1}}, "invalid value"),
])
def test_bad_attributes_say_what_was_expected(bad, message):
    with pytest.raises(InputError, match=message) as err:
        check_attributes(bad)
    assert "at most 8 attributes" in err.value.detail["expected"]


def test_attributes_are_kept_as_text():
    assert check_attributes({"country": "DE", "age_band": 3, "new": True, "w": 1.5}) == {
        "country": "DE", "age_band": "3", "new": "true", "w": "1.5"}
    assert check_attributes(None) is None


def test_segment_by_is_checked_in_the_config():
    with pytest.raises(ConfigError, match="invalid segment_by"):
        parse({"name": "x", "arms": ARMS, "segment_by": "country\n"})
    with pytest.raises(ConfigError, match="reads out a binary metric"):
        parse({"name": "x", "arms": ARMS, "metric": "continuous", "segment_by": "country"})
    with pytest.raises(ConfigError, match="invalid segment_by"):
        parse({"name": "x", "arms": ARMS, "segment_by": "no spaces"})
    config = parse({"name": "x", "arms": ARMS, "segment_by": "country"})
    assert parse(config.to_config()).segment_by == "country"


def test_segment_counts_keep_the_first_values_merge_and_round_trip():
    counts = SegmentCounts(by="country")
    for i in range(MAX_SEGMENTS + 5):
        counts.add(f"c{i}", "a", 1, 2)
    counts.add(None, "a", 0, 3)
    assert len(counts.values) == MAX_SEGMENTS and counts.other == {"a": [5, 10]}
    assert counts.unset == {"a": [0, 3]}
    again = SegmentCounts.from_json(counts.to_json())
    assert again == counts
    merged = counts.merge(again)
    assert merged.values["c0"] == {"a": [2, 4]} and merged.other == {"a": [10, 20]}
    # counts by another attribute cannot be added: the later fold's stay, the rest dropped
    other = SegmentCounts(by="device")
    other.add("ios", "a", 1, 1)
    switched = counts.merge(other)
    assert switched.by == "device" and switched.values == {"ios": {"a": [1, 1]}}
    assert switched.dropped == 2 * MAX_SEGMENTS + 10 + 3


@pytest.fixture
def gw(tmp_path):
    tag = store.save(make_posterior("binary", name="seg-b", seed=5))
    server = ModelServer({"seg-b": tag}, load=store.get, buckets=(1,))
    server.warmup()
    config = parse({"name": "seg-gw", "arms": ARMS, "segment_by": "country"})
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    g = gateway.Gateway(config, arms.arm_models(config, {"seg-b": tag}, store.metadata),
                        lambda **kw: server.predict(**kw), engine=eng,
                        writer=EventWriter(eng), poll_seconds=0.05)
    yield g
    g.close()


def _feed(g: gateway.Gateway) -> dict[str, int]:
    """Requests with attributes until every (country, arm) has its planted trials, and
    a few units without; outcomes fed back as planted. Returns trials per arm sent
    without the attribute."""
    async def run() -> dict[str, int]:
        for bad in ({"country": None}, "DE"):  # refused before anything is logged
            with pytest.raises(InputError):
                await g.predict("refused", ROW, attributes=bad)
        left = {c: {a: list(v) for a, v in d.items()} for c, d in PLANTED.items()}
        unset = {"a": 0, "b": 0}
        i = 0
        while any(n for d in left.values() for _, n in d.values()):
            country = list(PLANTED)[i % 3]
            body = await g.predict(f"u{i}", ROW, attributes={"country": country,
                                                             "device": "ios"})
            s, n = left[country][body["arm"]]
            if n:
                await g.feedback(body["request_id"], int(s > 0))
                left[country][body["arm"]] = [max(s - 1, 0), n - 1]
            i += 1
        for j in range(10):
            body = await g.predict(f"plain{j}", ROW)
            await g.feedback(body["request_id"], 1)
            unset[body["arm"]] += 1
        return unset

    unset = asyncio.run(run())
    g.writer.close()
    return unset


def test_attributes_are_logged_and_read_out_by_segment(gw, tmp_path):
    unset = _feed(gw)
    eng, config = gw.engine, gw.config
    data = events.read(eng, "seg-gw")
    assert "refused" not in set(data.unit)
    assert {"country": "DE", "device": "ios"} in data.attributes
    assert None in data.attributes

    out = segment_readout.read_out(eng, config)
    assert out["attribute"] == "country" and out["control"] == "a"
    assert [e["segment"] for e in out["effects"]] == ["US", "DE", "FR"]  # largest first
    for e in out["effects"]:
        (_, n_a), (s_b, n_b) = PLANTED[e["segment"]]["a"], PLANTED[e["segment"]]["b"]
        assert (e["arm"], e["control_trials"], e["trials"]) == ("b", n_a, n_b)
        # the unpooled read-out is the Beta(1, 1)-Binomial posterior: its mean difference
        s_a = PLANTED[e["segment"]]["a"][0]
        exact = stats.beta(1 + s_b, 1 + n_b - s_b).mean() - stats.beta(
            1 + s_a, 1 + n_a - s_a).mean()
        assert e["unpooled"]["rate_diff"][0] == pytest.approx(exact, abs=0.01)
        lo, hi = e["pooled"]["rate_diff"][1:]
        assert lo < hi and lo > -1 and hi < 1
    sent = sum(n for d in PLANTED.values() for _, n in d.values())
    assert out["trials"] == {"in_segments": sent, "unset": sum(unset.values()), "other": 0,
                             "dropped": 0, "not_recorded": 0}
    assert out["diagnostics"]["divergences"] == 0

    # the same counts from events in memory, from the store in small chunks, after a prune
    in_memory = folding.fold_events(data, segment_by="country")
    stored = event_reads.fold_all(eng, "seg-gw", timeline=None, segment_by="country")[0]
    assert in_memory.segments == stored.segments
    cut = float(np.median(data.ts))
    events.save_config(eng, "seg-gw", config.to_config())
    assert retention.prune(eng, "seg-gw", cut)["predictions"] > 0
    after = event_reads.fold_all(eng, "seg-gw", timeline=None, segment_by="country")[0]
    assert after.segments == stored.segments

    # a read-out by another attribute drops what was pruned by this one, and says so
    by_device = parse(config.to_config() | {"segment_by": "device"})
    moved = segment_readout.read_out(eng, by_device)
    assert moved["trials"]["dropped"] > 0
    assert moved["trials"]["in_segments"] + moved["trials"]["unset"] + \
        moved["trials"]["dropped"] == sent + sum(unset.values())


def test_without_segment_by_the_read_out_says_what_to_configure(tmp_path):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    with pytest.raises(Conflict, match="no segment attribute") as err:
        segment_readout.read_out(eng, parse({"name": "plain", "arms": ARMS}))
    assert "segment_by" in err.value.detail["expected"]
    empty = segment_readout.read_out(eng, parse({"name": "e", "arms": ARMS,
                                                 "segment_by": "country"}))
    assert empty["effects"] == [] and "no outcomes yet" in empty["note"]


def _rows(values: list[str | None], arm: str = "a") -> list[tuple]:
    """Observed rows of a binary metric (one success each) with segment values."""
    return [(arm, arm, "ok", [{"mean": 0.5, "probabilities": {"0": 0.5, "1": 0.5}}], 1, None,
             v) for v in values]


def test_a_later_fold_from_the_earlier_ones_values_merges_exactly(monkeypatch):
    """Past the values kept apart, folding in two parts (a prune, then the live events)
    gives what folding everything at once does, and the folder's memory stays bounded."""
    monkeypatch.setattr(aggregates, "MAX_SEGMENTS", 3)
    monkeypatch.setattr(folding, "MAX_SEGMENTS", 3)
    first, later = ["v0"], ["v1", "v2", "v3", "v0", "v4", None]
    whole = folding.fold_rows(Fold(segments=SegmentCounts(by="k")), _rows(first + later))
    part = folding.fold_rows(Fold(segments=SegmentCounts(by="k")), _rows(first))
    live = Fold(segments=SegmentCounts(by="k", values={v: {} for v in part.segments.values}))
    merged = part.merge(folding.fold_rows(live, _rows(later)))
    assert merged.segments.values == whole.segments.values == {
        "v0": {"a": [2, 2]}, "v1": {"a": [1, 1]}, "v2": {"a": [1, 1]}}
    assert merged.segments.other == whole.segments.other == {"a": [2, 2]}
    assert merged.segments.unset == {"a": [1, 1]}
    folder = folding.Folder(Fold(segments=SegmentCounts(by="k")))
    folder.add(_rows([f"u{i}" for i in range(1000)]))
    assert len(folder.segments) == 4  # three values and the rest as one cell


def test_stored_attributes_never_fail_a_read(tmp_path):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    rows = [events.prediction_row(request_id=f"r{i}", experiment="odd", arm="a",
                                  model_tag="m:1", unit=f"u{i}", status="ok", latency_ms=1.0,
                                  records=[{"mean": 0.5, "probabilities": {"0": 0.5, "1": 0.5}}],
                                  instances=None, attributes=a)
            for i, a in enumerate([{"country": "DE"}, None, {"country": "FR"}])]
    events.write_now(eng, "predictions", rows)
    events.write_now(eng, "outcomes", [{"request_id": f"r{i}", "ts": 0.0, "experiment": "odd",
                                        "outcome": 1} for i in range(3)])
    with eng.begin() as conn:  # SQL NULL when not sent; then text no client could send
        assert conn.exec_driver_sql(
            "select count(*) from predictions where attributes is null").scalar() == 1
        conn.exec_driver_sql("update predictions set attributes = ? where request_id = 'r2'",
                             ("[" * 100_000 + "]" * 100_000,))
        conn.exec_driver_sql("update predictions set attributes = 'not json' "
                             "where request_id = 'r1'")
    assert events.read(eng, "odd").attributes == [{"country": "DE"}, None, None]
    fold = event_reads.fold_all(eng, "odd", timeline=None, segment_by="country")[0]
    assert fold.segments.values == {"DE": {"a": [1, 1]}} and fold.segments.unset == {
        "a": [2, 2]}
