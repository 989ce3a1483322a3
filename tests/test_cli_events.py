"""``workbench events prune`` as a user runs it (real subprocesses) on SQLite and
PostgreSQL: old events folded into the experiment's aggregate and deleted in batches; the
read-out before and after gives the same decision and the same counts; without the
aggregate it forgets them; a batch's fold and delete commit together or not at all."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from test_aggregates import fixture_store

from workbench import event_reads, events, readout, retention, schema

CLI = [sys.executable, "-m", "workbench.cli", "events", "prune"]
T0 = 1_700_000_000.0  # fixture_store's first event; one request a second, 400 of them
HOUR = 3600.0
CUTOFF = T0 + 200.5 + HOUR / 2  # in the first gap _gaps() opens: 201 requests before it
LATER = T0 + 300.5 + 1.5 * HOUR  # in the second: 301 requests before it


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url = request.getfixturevalue("postgres_url")
    eng = events.engine(url)
    with eng.begin() as conn:  # each test starts from an empty store
        for table in (schema.outcomes, schema.predictions, schema.registry, schema.audit,
                      schema.state, schema.aggregates):
            conn.execute(table.delete())
    return url


def _gaps(eng, experiment: str = "fx") -> None:
    """Open an hour's gap after request 200 and another after 300: ``--older-than`` is
    relative to when the process starts, so a cutoff lands in a gap whatever the delay."""
    p = schema.predictions
    with eng.begin() as conn:
        for after in (T0 + 200.5, T0 + HOUR + 300.5):
            conn.execute(p.update().where(p.c.experiment == experiment, p.c.ts >= after)
                         .values(ts=p.c.ts + HOUR))


def prune(db: str, *args: str, older_than: float | None = None, check: bool = True,
          stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI; ``older_than`` defaults to the seconds since CUTOFF."""
    age = f"{time.time() - CUTOFF if older_than is None else older_than:.3f}"
    return subprocess.run([*CLI, "--older-than", age, *args, "--db", db], input=stdin,
                          capture_output=True, text=True, check=check, timeout=120)


def _counts(result) -> dict:
    return {"arms": [(a.arm, a.predictions, a.outcomes) for a in result.arms],
            "totals": result.totals, "skipped": result.skipped,
            "srm": None if result.srm is None else result.srm["observed"]}


def _left(eng, experiment: str, before: float = CUTOFF) -> dict[str, int]:
    p, o = schema.predictions, schema.outcomes
    with eng.connect() as conn:
        old = conn.execute(sa.select(sa.func.count()).where(
            p.c.experiment == experiment, p.c.ts < before)).scalar()
        shadows = conn.execute(sa.select(sa.func.count()).where(
            p.c.experiment == experiment, p.c.parent_id.is_not(None))).scalar()
        outs = conn.execute(sa.select(sa.func.count()).where(
            o.c.experiment == experiment)).scalar()
    return {"old": old, "shadows": shadows, "outcomes": outs}


@pytest.mark.parametrize("metric", ["binary", "log_score"])
def test_prune_folds_then_deletes_and_the_read_out_stays_the_same(db, metric):
    eng = events.engine(db)
    fixture_store(eng, "fx", metric)
    _gaps(eng)
    before = readout.read_out(eng, "fx")
    stored = _left(eng, "fx")
    done = prune(db, "--experiment", "fx", "--yes")
    assert "folded into each experiment's aggregate first" in done.stdout
    assert "fx: pruned 268 prediction(s) and 128 outcome(s)" in done.stdout
    assert "fx: 268/268 predictions" in done.stderr  # progress, batch by batch
    left = _left(eng, "fx")
    assert left["old"] == 0 and left["shadows"] == 67 and left["outcomes"] == \
        stored["outcomes"] - 128
    assert events.prediction_of(eng, "fx-r00007") is None  # its feedback is now a 404
    after = readout.read_out(eng, "fx")
    assert after.decision == before.decision
    assert _counts(after) == _counts(before)
    # the same statistics (score values in the same order), hence the same draws
    assert [(a.mean, a.interval, a.prob_best) for a in after.arms] == \
        [(a.mean, a.interval, a.prob_best) for a in before.arms]
    assert after.srm["p_value"] == pytest.approx(before.srm["p_value"], rel=1e-12)
    assert after.pruned["upto"] == pytest.approx(CUTOFF, abs=60)
    assert after.pruned["predictions"] == 268
    # a second prune merges into the aggregate; still the same read-out
    prune(db, "--experiment", "fx", "--yes", older_than=time.time() - LATER)
    again = readout.read_out(eng, "fx")
    assert again.decision == before.decision and _counts(again) == _counts(before)
    assert again.pruned["predictions"] == 402
    assert event_reads.exists(eng, "fx")


def test_prune_without_the_aggregate_forgets_the_events(db):
    eng = events.engine(db)
    fixture_store(eng, "fx", "binary")
    _gaps(eng)
    before = readout.read_out(eng, "fx")
    done = prune(db, "--no-aggregate", "--yes")  # every experiment: here only fx
    assert "deleted WITHOUT folding: the read-out forgets them" in done.stdout
    assert "not folded (forgotten)" in done.stdout
    after = readout.read_out(eng, "fx")
    assert after.pruned is None
    assert after.totals["predictions"] == before.totals["predictions"] - 201
    assert sum(a.predictions for a in after.arms) < sum(a.predictions for a in before.arms)
    with eng.connect() as conn:
        assert conn.execute(sa.select(schema.aggregates)).all() == []


def test_prune_asks_first_and_says_what_it_expects(db):
    eng = events.engine(db)
    fixture_store(eng, "fx", "binary")
    _gaps(eng)
    refused = prune(db, check=False, stdin="n\n")
    assert refused.returncode == 1 and "Prune them?" in refused.stdout
    assert _left(eng, "fx")["old"] == 268  # nothing done
    bad = prune(db, "--older-than", "soon", check=False)
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
    nothing = prune(db, "--yes", older_than=time.time() - T0 + 3600)
    assert "nothing to prune" in nothing.stdout


def test_a_batch_folds_and_deletes_in_one_transaction(monkeypatch, tmp_path):
    """A failure between the fold and the delete leaves the store as it was: nothing in
    the aggregate, nothing deleted; batches before it stay done."""
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    fixture_store(eng, "fx", "binary")
    real, calls = retention._fold_into, []

    def fold_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the disk is full")

    monkeypatch.setattr(retention, "_fold_into", fold_then_fail)
    seen = []
    with pytest.raises(RuntimeError):
        retention.prune(eng, "fx", T0 + 200.5, batch=50, progress=seen.append)
    assert seen == [50]  # the first batch: 37 requests and their 13 shadows
    with eng.connect() as conn:
        stored = event_reads.stored(conn, "fx")
    assert stored[1]["predictions"] == 50 and _left(eng, "fx", T0 + 200.5)["old"] == 268 - 50
    monkeypatch.setattr(retention, "_fold_into", real)
    before = readout.read_out(eng, "fx")
    retention.prune(eng, "fx", T0 + 200.5, batch=50)
    after = readout.read_out(eng, "fx")
    assert _counts(after) == _counts(before) and after.decision == before.decision


def test_shadows_go_with_their_request(tmp_path):
    """A shadow is pruned with its primary request (whatever its own time), a shadow whose
    primary is gone is pruned by its own time, and one whose primary stays, stays."""
    eng = events.engine(f"sqlite:///{tmp_path / 'events.db'}")
    fixture_store(eng, "fx", "continuous")
    p = schema.predictions
    with eng.begin() as conn:
        conn.execute(p.delete().where(p.c.request_id == "fx-r00003"))  # fx-s00003: orphan
        conn.execute(p.update().where(p.c.request_id == "fx-s00300").values(ts=T0 + 100))
        conn.execute(p.update().where(p.c.request_id == "fx-s00198").values(ts=T0 + 250))
    before = readout.read_out(eng, "fx")
    retention.prune(eng, "fx", T0 + 200.5, batch=16)
    with eng.connect() as conn:
        left = set(conn.execute(sa.select(p.c.request_id).where(
            p.c.parent_id.is_not(None))).scalars())
    assert "fx-s00003" not in left and "fx-s00198" not in left and "fx-s00300" in left
    assert len(left) == 67
    after = readout.read_out(eng, "fx")
    assert after.coverage.keys() == before.coverage.keys()
    for arm, c in before.coverage.items():
        assert after.coverage[arm]["rows"] == c["rows"]
        assert after.coverage[arm]["coverage"] == pytest.approx(c["coverage"], rel=1e-12)
