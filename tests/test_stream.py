"""Streaming inference on a real Redis (Debian's redis-server): events scored as the
Predictor scores them, bad events dead-lettered with their reason, redeliveries written
once, experiments routed and logged like the gateway's, and two ``workbench stream``
processes sharing 10,000 events while one is killed midway, losing none."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
import uuid

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_posterior
from servers import free_port, wait_for

from workbench import config, events, store
from workbench.background import launch
from workbench.errors import ConfigError, Unavailable
from workbench.predict import Predictor
from workbench.readout import read_out
from workbench.spool import Spool
from workbench.stream import Scorer, consume, open_sink, open_source
from workbench.stream_experiment import StreamExperiment
from workbench.stream_redis import parse_url
from workbench.writer import EventWriter

redis = pytest.importorskip("redis")
CLI = [sys.executable, "-m", "workbench.cli"]


@pytest.fixture(scope="module")
def model():
    posterior = make_posterior("binary", n_features=3, draws=200, seed=11, name="stream")
    return store.save(posterior), posterior


@pytest.fixture(scope="module")
def scorer(model):
    tag, posterior = model
    scorer = Scorer({tag: posterior}, batch=16)
    scorer.warmup()
    yield scorer
    scorer.close()


@pytest.fixture
def streams(redis_url):
    """A fresh source and sink stream URL, and a client of their Redis."""
    name = uuid.uuid4().hex[:8]
    client = redis.Redis.from_url(redis_url)
    yield f"{redis_url}/events-{name}", f"{redis_url}/scores-{name}", client
    client.close()


def _produce(client, url: str, events: list[dict]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for fields in events:
        pipe.xadd(parse_url(url).stream, fields)
    return [i.decode() for i in pipe.execute()]


def _entries(client, url: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in client.xrange(parse_url(url).stream)]


def _consume(source_url, sink_url, scorer, *, consumer="c1", claim_idle=30.0, source=None,
             **options):
    source = source or open_source(source_url, consumer=consumer, claim_idle=claim_idle)
    sink = open_sink(sink_url)
    try:
        return asyncio.run(consume(source, sink, scorer, consumer=consumer, **options))
    finally:
        source.close()
        sink.close()


class _DiesBeforeAck:
    """A source whose consumer writes its results and dies before acknowledging them."""

    def __init__(self, source):
        self.source, self.name, self.reads = source, source.name, []

    def read(self, count):
        self.reads.append(count)
        got = self.source.read(count)
        assert len(got) <= count
        return got

    def ack(self, ids):
        pass

    def backlog(self):
        return self.source.backlog()

    def close(self):
        self.source.close()


def test_events_are_scored_as_the_predictor_scores_them(model, scorer, streams):
    tag, posterior = model
    source, sink, client = streams
    rows = np.random.default_rng(0).normal(size=(30, 3)).round(3).tolist()
    ids = _produce(client, source, [{"instances": json.dumps([r]), "unit": f"u{i}"}
                                    for i, r in enumerate(rows[:20])] + [
        {"instances": json.dumps(rows[20])},  # one row, not in a list
        {"instances": json.dumps({f"x{j}": v for j, v in enumerate(rows[21])}),
         "request_id": "client-chosen-id"},  # one row keyed by feature name
        {"instances": json.dumps(rows[22:30])}])  # eight rows in one event
    spy = _DiesBeforeAck(open_source(source, consumer="c1"))
    spy.ack = spy.source.ack  # this one acknowledges: only the reads are watched
    stats = _consume(source, sink, scorer, source=spy, batch=4, max_events=23,
                     interval_mass=0.8)
    assert (stats.scored, stats.refused, stats.duplicate) == (23, 0, 0)
    assert max(spy.reads) == 4 and stats.batches == 6  # never more than --batch in flight
    got = _entries(client, sink)
    assert [g["event_id"] for g in got] == ids
    want = Predictor(posterior).predict(rows, interval_mass=0.8).records()
    served = [p for g in got for p in json.loads(g["predictions"])]
    assert len(served) == 30
    for s, w in zip(served, want, strict=True):
        np.testing.assert_allclose([s["mean"], s["std"], *s["interval"]],
                                   [w["mean"], w["std"], *w["interval"]], atol=1e-6)
        assert s["label"] == w["label"]
    assert {g["model"] for g in got} == {tag} and got[0]["unit"] == "u0"
    assert got[21]["request_id"] == "client-chosen-id"
    assert re.fullmatch(r"[0-9a-f]{32}", got[0]["request_id"])
    assert stats.summary()["latency_p99_ms"] > 0
    assert open_source(source).backlog() == {"pending": 0, "lag": 0}


def test_a_bad_event_is_dead_lettered_with_its_reason_and_the_loop_goes_on(scorer, streams):
    source, sink, client = streams
    good = {"instances": "[[0.1, 0.2, 0.3]]"}
    bad = [({"instances": "[[0.1, 0.2"}, "instances is not valid JSON"),
           ({"features": "[[1, 2, 3]]"}, "the event has no instances field"),
           ({"instances": "[[1, 2]]"}, "row 0 has 2 values"),
           ({"instances": "[[1, NaN, 3]]"}, "is not a finite number"),
           ({"instances": "[[1, 2, 3]]", "request_id": "x" * 65}, "invalid request_id"),
           ({"instances": b"\xff\xfe"}, "field 'instances' is not UTF-8 text"),
           ({"instances": "[" * 100_000 + "]" * 100_000}, "RecursionError")]
    ids = _produce(client, source, [good, *[b for b, _ in bad], good])
    stats = _consume(source, sink, scorer, batch=16, idle_exit=0.2)  # stops when idle
    assert (stats.scored, stats.refused) == (2, 7)
    assert [g["event_id"] for g in _entries(client, sink)] == [ids[0], ids[-1]]
    dead = _entries(client, sink + ".dead")
    assert [d["event_id"] for d in dead] == ids[1:-1]
    for letter, (fields, reason) in zip(dead, bad, strict=True):
        assert reason in letter["reason"]
        assert set(json.loads(letter["event"])) == set(fields)
    assert "expected" in dead[2]["reason"]  # says what a row must be
    assert open_source(source).backlog()["pending"] == 0  # refused events are acknowledged


@pytest.mark.parametrize("second", ["restarted", "other"])
def test_a_redelivered_event_is_not_written_twice(scorer, streams, second):
    source, sink, client = streams
    _produce(client, source, [{"instances": f"[[{i}, 0, 1]]"} for i in range(5)])
    first = _DiesBeforeAck(open_source(source, consumer="c1"))
    assert _consume(source, sink, scorer, source=first, max_events=5).scored == 5
    assert open_source(source).backlog()["pending"] == 5
    # the same consumer restarted reads its own pending entries again; another one claims
    # them once idle (claim_idle=0: at once)
    stats = _consume(source, sink, scorer, consumer="c1" if second == "restarted" else "c2",
                     claim_idle=30.0 if second == "restarted" else 0.0, max_events=5)
    assert (stats.scored, stats.duplicate) == (0, 5)
    assert stats.claimed == (0 if second == "restarted" else 5)
    assert client.xlen(parse_url(sink).stream) == 5
    assert open_source(source).backlog()["pending"] == 0


def test_bad_urls_and_an_unreachable_redis_say_what_is_wrong(model, redis_url):
    for url, message in [("redis://127.0.0.1:6379/0", "the path must be /DB/STREAM"),
                         ("redis://127.0.0.1:6379/x/s", "the path must be /DB/STREAM"),
                         ("http://127.0.0.1/0/s", "needs a redis:// scheme"),
                         ("redis://127.0.0.1:99999/0/s", "invalid stream URL"),
                         ("redis://127.0.0.1/0/s?group=g", "unknown stream URL options")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_url(url)
    assert parse_url("redis://u:secret@h:1/2/a%2Fb").stream == "a/b"
    assert "secret" not in parse_url("redis://u:secret@h:1/2/a").shown
    with pytest.raises(Unavailable, match=r"cannot reach Redis at redis://127.0.0.1:\d+/0/s"):
        open_source(f"redis://127.0.0.1:{free_port()}/0/s")
    with pytest.raises(ConfigError, match="invalid ttl"):
        open_sink(f"{redis_url}/s?ttl=soon")
    from workbench.cli import main

    tag, _ = model
    for args, message in [(["--source", "kafka://k:9092/t", "--sink", f"{redis_url}/o"],
                           "--source: unsupported stream URL 'kafka://k:9092/t'"),
                          (["--source", f"redis://u:pw@127.0.0.1:{free_port()}/0/s",
                            "--sink", f"{redis_url}/o"], "cannot reach Redis at")]:
        result = CliRunner().invoke(main, ["stream", tag, *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "pw@" not in result.output
    result = CliRunner().invoke(main, ["stream", "--source", f"{redis_url}/s", "--sink",
                                       f"{redis_url}/o"])
    assert result.exit_code == 2 and "name a MODEL, or an --experiment" in result.output


def test_an_experiment_on_a_stream_is_routed_and_logged_like_the_gateway(model, scorer,
                                                                           streams, tmp_path):
    tag, _ = model
    source, sink, client = streams
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    cfg = config.parse({"name": "on-a-stream", "arms": [{"name": "a", "model": tag},
                                                         {"name": "b", "model": tag}]})
    _produce(client, source, [{"instances": "[[0.5, 0.1, -1]]", "unit": f"user-{i}"}
                              | ({"attributes": '{"country": "DE"}'} if i % 2 else {})
                              for i in range(40)] + [{"instances": "[[0.5, 0.1, -1]]"}]
              + [{"instances": "[[0.5, 0.1, -1]]", "unit": "u", "attributes": a}
                 for a in ('{"country": [1]}', "{")])

    def run(source_override=None):
        experiment = StreamExperiment(eng, cfg, {"a": tag, "b": tag}, writer=EventWriter(
            eng, spool=Spool(tmp_path / "spool"), ack="durable"))
        try:
            return _consume(source, sink, scorer, experiment=experiment, max_events=43,
                            source=source_override), experiment
        finally:
            experiment.close()

    stats, experiment = run(_DiesBeforeAck(open_source(source, consumer="c1")))
    assert (stats.scored, stats.refused) == (40, 3)
    got = _entries(client, sink)
    assert {g["arm"] for g in got} == {"a", "b"}
    assert all(g["arm"] == experiment.route(g["unit"])[0] for g in got)  # sticky by unit
    reasons = [d["reason"] for d in _entries(client, sink + ".dead")]
    assert "no unit" in reasons[0] and "invalid value of attribute" in reasons[1]
    assert "attributes is not valid JSON" in reasons[2]  # refused before anything is logged
    logged = events.read(eng, "on-a-stream")
    assert sorted(logged.request_id) == sorted(g["request_id"] for g in got)
    assert set(logged.status) == {"ok"} and set(logged.model_tag) == {tag}
    assert logged.attributes.count({"country": "DE"}) == 20  # the unit's, for segments
    assert logged.attributes.count(None) == 20
    assert {r: a for r, a in zip(logged.request_id, logged.arm, strict=True)} == {
        g["request_id"]: g["arm"] for g in got}
    stats, _ = run()  # redelivered (never acknowledged): no second result, no second row
    assert (stats.scored, stats.duplicate) == (0, 43)
    assert len(events.read(eng, "on-a-stream")) == 40
    readout = read_out(eng, "on-a-stream", config=cfg).to_dict()  # the gateway's read-out
    assert {a["arm"]: a["predictions"] for a in readout["arms"]} == {
        arm: sum(g["arm"] == arm for g in got) for arm in ("a", "b")}
    eng.dispose()


def test_two_consumers_one_killed_midway_every_event_scored_exactly_once(model, streams,
                                                                          tmp_path):
    tag, posterior = model
    source, sink, client = streams
    stream, out, group = parse_url(source).stream, parse_url(sink).stream, "workbench"
    metrics_port = free_port()
    procs = {}
    try:
        for name in ("a", "b"):
            extra = ["--metrics-port", str(metrics_port)] if name == "b" else []
            procs[name] = launch([*CLI, "stream", tag, "--source", source, "--sink", sink,
                                  "--consumer", name, "--batch", "16", "--claim-idle", "2",
                                  *extra], port=0, log=tmp_path / f"{name}.log",
                                 ready_path=None)

        def registered() -> set[str]:
            assert all(p.running() for p in procs.values()), [p.output() for p in
                                                                procs.values()]
            try:
                return {c["name"].decode() for c in client.xinfo_consumers(stream, group)}
            except redis.ResponseError:  # no group yet
                return set()

        wait_for(lambda: registered() == {"a", "b"}, 180, "both consumers reading")
        rows = np.random.default_rng(1).normal(size=(10_000, 3)).round(4)
        ids = _produce(client, source, [{"instances": json.dumps([r])} for r in rows.tolist()])
        wait_for(lambda: client.xlen(out) >= 4_000, 60, "4,000 results", every=0.005)
        a, held = procs["a"], []

        def frozen_holding_a_batch() -> bool:
            os.kill(a.pid, signal.SIGSTOP)
            held[:] = [p["message_id"].decode() for p in client.xpending_range(
                stream, group, min="-", max="+", count=1000, consumername="a")]
            if not held:
                os.kill(a.pid, signal.SIGCONT)
            return bool(held)

        wait_for(frozen_holding_a_batch, 30, "a holding a batch", every=0.001)
        already = sum(client.exists(f"{out}:done:{stream}/{i}") for i in held)
        a.kill()
        wait_for(lambda: client.xlen(out) >= 10_000, 120, "10,000 results")
        wait_for(lambda: client.xinfo_groups(stream)[0]["pending"] == 0, 30, "all acked")
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert any(ln.startswith("workbench_stream_events_total{") and f'"{stream}"' in ln
                   and 'outcome="scored"' in ln and float(ln.split()[-1]) > 0
                   for ln in scraped.splitlines()), scraped[-3000:]
        b = procs["b"]
        assert b.stop(signal.SIGTERM) == 0, b.output()[-3000:]  # finishes, acks, exits 0
        summary = json.loads(next(line for line in reversed(b.output().splitlines())
                                  if line.startswith("{")))
    finally:
        for proc in procs.values():
            proc.stop()
    results = _entries(client, sink)
    assert len(results) == 10_000 and client.xlen(out + ".dead") == 0
    assert sorted(r["event_id"] for r in results) == sorted(ids)  # each exactly once
    by = {c: sum(r["consumer"] == c for r in results) for c in ("a", "b")}
    assert by["a"] > 0 and by["b"] == summary["scored"] and by["a"] + by["b"] == 10_000
    # b took over what a held when it died; what a had written already is a duplicate
    assert summary["claimed"] >= len(held) > 0
    assert already <= summary["duplicate"] <= summary["claimed"]
    sample = np.random.default_rng(2).choice(10_000, 200, replace=False)
    want = Predictor(posterior).predict(rows[sample].tolist()).records()
    index = {r["event_id"]: r for r in results}
    for i, w in zip(sample, want, strict=True):
        (s,) = json.loads(index[ids[i]]["predictions"])
        np.testing.assert_allclose([s["mean"], s["std"], *s["interval"]],
                                   [w["mean"], w["std"], *w["interval"]], atol=1e-6)
    latency = [int(rid.decode().split("-")[0]) - int(f[b"event_id"].decode().split("-")[0])
               for rid, f in client.xrange(out)]
    p50, p99 = np.percentile(latency, [50, 99])
    print(f"\nstream: 10,000 events, 2 consumers, 1 killed holding {len(held)} "
          f"({already} already written): event-to-result latency p50 {p50:.0f} ms, "
          f"p99 {p99:.0f} ms; survivor {summary}")


@pytest.mark.parametrize("inputs", ["raw", "hash", "none"])
def test_a_stream_logs_what_the_inputs_setting_says_as_the_gateway_does(inputs, tmp_path):
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    cfg = config.parse({"name": "privacy", "arms": [{"name": "a", "model": "m"},
                                                     {"name": "b", "model": "m"}]})
    tags = {"a": "m:1", "b": "m:1"}
    experiment = StreamExperiment(eng, cfg, tags, inputs=inputs)
    X = np.asarray([[0.5, 0.1, -1.0]], np.float32)
    try:
        row = experiment.row(request_id="r1", unit="u", arm="a", tag="m:1", records=[{}],
                             status="ok", latency_ms=1.0, instances=X)
    finally:
        experiment.close()
        eng.dispose()
    expected = {"raw": X.tolist(), "none": None, "hash": {"sha256": hashlib.sha256(
        json.dumps(X.tolist()).encode()).hexdigest()}}  # the gateway's, for equal inputs
    assert row["instances"] == expected[inputs]
    with pytest.raises(ConfigError, match="invalid event inputs"):
        StreamExperiment(eng, cfg, tags, inputs="everything")
