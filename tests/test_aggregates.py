"""Sufficient statistics of events (workbench.aggregates) and the read-out made from them:
fold, merge and JSON round trip; the store's fold against the in-memory one; the read-out
against the numbers of the implementation it replaced and against closed forms; the exact
Bayesian bootstrap against its Normal limit at the switch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from workbench import (
    bootstrap,
    control,
    dashboard_data,
    event_reads,
    events,
    experiments,
    folding,
    observations,
    readout,
    schema,
)
from workbench.aggregates import N_EXACT, Fold, Moments, Score
from workbench.closed_forms import beta_chance_to_win
from workbench.config import parse
from workbench.folding import fold_events

# Computed by the read-out before issue 14 (commit d07a002, every event in memory) on
# fixture_store(): per metric and arm (predictions, outcomes, mean, 5%, 95%, P(best),
# expected loss, lift mean, lift 5%, lift 95%); the decision; the SRM p-value; skipped
# outcomes; coverage per serving arm (rows, share inside, mean width).
OLD = {
    'binary': {
        "arms": [
            (231, 147, 0.5505862080694004, 0.4834193894107898, 0.6176694003859805, 0.14115,
             0.07191966011742257, None, None, None),
            (161, 100, 0.6178579815866949, 0.5372819078645872, 0.6954243242093282, 0.85885,
             0.004647886600128279, 0.12847287800106497, -0.0627167948697242,
             0.33701420119893577),
        ],
        "decision": ('running', None), "srm": 0.6650055421021142,
        "skipped": 1,
        "coverage": {},
    },
    'continuous': {
        "arms": [
            (234, 142, 9.965181350708008, 9.674803876876831, 10.263379859924317, 0.05825,
             0.5057477355003357, None, None, None),
            (158, 96, 10.462764739990234, 10.050260543823242, 10.880979871749878, 0.94175,
             0.008164756000041962, 0.050264619290828705, -0.002346267236862331,
             0.10346089117228983),
        ],
        "decision": ('collecting', None), "srm": 0.9015386266572203,
        "skipped": 1,
        "coverage": {'a': (147, 0.7619047619047619, 5.0), 's': (66, 0.8939393939393939, 7.0),
                     'b': (95, 0.7894736842105263, 5.0)},
    },
    'log_score': {
        "arms": [
            (231, 147, -0.521244228546758, -0.5834442756201292, -0.4649533494001601, 0.75245,
             0.007202831907412107, None, None, None),
            (161, 100, -0.5535542441550418, -0.6081075495538198, -0.5021413042212449, 0.24755,
             0.03951284751569611, -0.032310015608284025, -0.11034977002700448,
             0.04771649148913893),
        ],
        "decision": ('running', None), "srm": 0.6650055421021142,
        "skipped": 1,
        "coverage": {},
    },
    'brier': {
        "arms": [
            (231, 147, 0.3449402856943435, 0.2976644441946238, 0.3964429019013521, 0.75235,
             0.0061795773822415166, None, None, None),
            (161, 100, 0.37317245167148483, 0.3265167578847391, 0.4229877875792077, 0.24765,
             0.034411743359382845, 0.02823216597714135, -0.04060607142758095, 0.09645241505712929),
        ],
        "decision": ('running', None), "srm": 0.6650055421021142,
        "skipped": 1,
        "coverage": {},
    },
}
# the binary classifier's reliability table per serving arm: rows and observed share per bin
OLD_RELIABILITY = {
    'a': [(7, 0.0), (18, 0.2222222222222222), (15, 0.13333333333333333), (12,
           0.4166666666666667), (17, 0.5294117647058824), (24, 0.625), (18, 0.7222222222222222),
           (16, 0.8125), (17, 0.8823529411764706), (7, 1.0)],
    's': [(5, 0.0), (4, 0.0), (6, 0.3333333333333333), (8, 0.375), (9, 0.4444444444444444), (8,
           0.75), (13, 0.6153846153846154), (6, 0.8333333333333334), (9, 1.0), (6, 1.0)],
    'b': [(13, 0.23076923076923078), (10, 0.5), (19, 0.42105263157894735), (12,
           0.6666666666666666), (16, 0.8125), (17, 0.8235294117647058), (11, 1.0)],
}


def fixture_store(eng, name, metric, n=400, seed=11):
    """A small deterministic store: two arms and a shadow, fallbacks, paused traffic, a
    ramp in the weights timeline, outcomes on ~60% of requests (two the metric cannot take),
    classifier or regression summaries."""
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000.0
    regression = metric == "continuous"
    events.save_config(eng, name, {"name": name, "metric": metric, "arms": [
        {"name": "a", "model": "m-a"}, {"name": "b", "model": "m-b"}]})
    weights = [(t0 - 10, {"a": 0.5, "b": 0.5}), (t0 + n / 2, {"a": 0.7, "b": 0.3})]
    with eng.begin() as conn:
        conn.execute(schema.state.insert().values(
            experiment=name, status="running", weights=weights[-1][1], winner=None,
            version=len(weights), updated=t0))
        for v, (ts, w) in enumerate(weights, 1):
            conn.execute(schema.audit.insert().values(
                experiment=name, ts=ts, actor="test", action="ramp", reason="",
                before=None, after={"status": "running", "weights": w}, version=v))
    preds, outs = [], []
    for i in range(n):
        arm = "a" if rng.random() < (0.5 if i < n / 2 else 0.7) else "b"
        status, served, fallback_from = "ok", arm, None
        if arm == "b" and rng.random() < 0.05:
            status, served, fallback_from = "fallback", "a", "b"
        if i % 50 == 49:
            status = "paused"
        p = float(rng.uniform(0.05, 0.95)) if arm == "a" else float(rng.uniform(0.2, 0.9))
        mu = float(rng.normal(10, 1))
        row = ({"mean": mu, "std": 1.5, "interval": [mu - 2.5, mu + 2.5]} if regression else
               {"mean": p, "std": 0.1, "interval": [max(p - 0.2, 0.0), min(p + 0.2, 1.0)],
                "probabilities": {"no": 1 - p, "yes": p}, "label": "yes"})
        rid = f"{name}-r{i:05d}"
        preds.append({"request_id": rid, "parent_id": None, "ts": t0 + i, "experiment": name,
                      "arm": served, "model_tag": f"m-{served}:1", "unit": f"u{i}",
                      "latency_ms": float(rng.gamma(2.0, 3.0)), "status": status,
                      "fallback_from": fallback_from, "n_rows": 1, "summary": [row],
                      "instances": None})
        if i % 3 == 0:  # a shadow beside every third request
            q = min(max(p + float(rng.normal(0, 0.1)), 0.01), 0.99)
            shadow = ({"mean": mu + 0.5, "std": 2.0, "interval": [mu - 3.0, mu + 4.0]}
                      if regression else
                      {"mean": q, "std": 0.1, "interval": [max(q - 0.2, 0.0), min(q + 0.2, 1.0)],
                       "probabilities": {"no": 1 - q, "yes": q}, "label": "yes"})
            preds.append({"request_id": f"{name}-s{i:05d}", "parent_id": rid, "ts": t0 + i + 0.001,
                          "experiment": name, "arm": "s", "model_tag": "m-s:1", "unit": f"u{i}",
                          "latency_ms": 1.0, "status": "shadow", "fallback_from": None,
                          "n_rows": 1, "summary": [shadow], "instances": None})
        if rng.random() < 0.6:
            y = (float(rng.normal(mu + (0.3 if arm == "b" else 0.0), 2.0)) if regression
                 else int(rng.random() < p))
            if i in (7, 8):
                y = "maybe"  # stored by an older version: the metric cannot take it
            outs.append({"request_id": rid, "ts": t0 + i + 5, "experiment": name,
                         "outcome": y})
    events.write_now(eng, "predictions", preds)
    events.write_now(eng, "outcomes", outs)


@pytest.fixture
def eng(tmp_path):
    return events.engine(f"sqlite:///{tmp_path / 'agg.db'}")


def _arm_numbers(arm) -> tuple:
    lift = (arm.lift["mean"], arm.lift["lo"], arm.lift["hi"]) if arm.lift else (None,) * 3
    return (arm.predictions, arm.outcomes, arm.mean, *(arm.interval or (None, None)),
            arm.prob_best, arm.expected_loss, *lift)


@pytest.mark.parametrize("metric", ["binary", "continuous", "log_score", "brier"])
def test_read_out_gives_the_numbers_of_the_implementation_it_replaced(eng, metric):
    """The arms' numbers are the same sufficient statistics followed by the same seeded
    draws: binary identically (Beta draws from the same counts); continuous NUTS on the
    same float32 (n, mean, m2), and the scores' exact Bayesian bootstrap drawn by blocks
    from the same stream as ``rng.dirichlet``: identical on the machine that recorded OLD,
    compared to 1e-9 and (float32 NUTS) 1e-6 so that another BLAS or CPU may round
    otherwise. The SRM p-value agrees to 1e-9: expected shares are now a count times a
    weight per weights segment instead of one weight added per request. Reliability bins
    agree exactly in rows and observed shares."""
    fixture_store(eng, f"fx-{metric}", metric)
    out = readout.read_out(eng, f"fx-{metric}")
    old = OLD[metric]
    got = [_arm_numbers(a) for a in out.arms]
    if metric == "binary":
        assert got == old["arms"]
    else:
        rel = 1e-6 if metric == "continuous" else 1e-9
        for mine, theirs in zip(got, old["arms"], strict=True):
            assert mine[:2] == theirs[:2]
            assert [x is None for x in mine] == [x is None for x in theirs]
            assert [x for x in mine[2:] if x is not None] == pytest.approx(
                [x for x in theirs[2:] if x is not None], rel=rel, abs=1e-12)
    assert (out.decision["status"], out.decision["winner"]) == old["decision"]
    assert out.srm["p_value"] == pytest.approx(old["srm"], rel=1e-9)
    assert out.skipped == old["skipped"]
    assert out.coverage.keys() == old["coverage"].keys()
    for arm, (rows, share, width) in old["coverage"].items():
        assert out.coverage[arm]["rows"] == rows
        assert (out.coverage[arm]["coverage"], out.coverage[arm]["mean_width"]) == \
            pytest.approx((share, width), rel=1e-12)
    if metric != "continuous":
        assert {a: [(b["rows"], b["observed"]) for b in v] for a, v in
                out.reliability.items()} == OLD_RELIABILITY


def test_binary_read_out_is_the_beta_posterior(eng):
    """Closed forms: each arm's posterior is Beta(1 + s, 1 + n - s) over the outcomes
    counted for it (counted here from the raw events); the read-out's Monte Carlo mean,
    90% interval and P(best) stand within 4 Monte Carlo standard errors of the exact
    mean, quantiles and P(p_b > p_a)."""
    fixture_store(eng, "fx", "binary")
    data = readout.counted(events.read(eng, "fx"))
    out = readout.read_out(eng, "fx")
    draws = experiments.DRAWS
    params = []
    for arm in out.arms:
        ys = [o for a, o in zip(data.arm, data.outcome, strict=True)
              if a == arm.arm and o is not None and not isinstance(o, str)]
        alpha, beta = 1 + sum(ys), 1 + len(ys) - sum(ys)
        params.append((alpha, beta))
        post = stats.beta(alpha, beta)
        assert arm.outcomes == len(ys)
        assert abs(arm.mean - post.mean()) < 4 * post.std() / np.sqrt(draws)
        for got, q in zip(arm.interval, (0.05, 0.95), strict=True):
            se = np.sqrt(q * (1 - q) / draws) / post.pdf(post.ppf(q))
            assert abs(got - post.ppf(q)) < 4 * se
    exact = beta_chance_to_win(*params[0], *params[1])
    assert abs(out.arms[1].prob_best - exact) < 4 * np.sqrt(exact * (1 - exact) / draws)


# -- fold, merge, JSON -------------------------------------------------------------------------

TIMELINE = [(50.0, {"a": 0.5, "b": 0.5}), (150.0, {"a": 0.8, "b": 0.2})]


def _mixed(n: int = 600, seed: int = 3) -> events.Events:
    """Events of every kind: statuses, classifier and regression rows, two-row requests
    with one outcome each, outcomes missing, unusable or of the wrong length."""
    rng = np.random.default_rng(seed)
    statuses = rng.choice(["ok", "ok", "ok", "fallback", "shadow", "paused"], n)
    arms = np.where(statuses == "shadow", "s", rng.choice(["a", "b"], n)).astype(object)
    summaries, outs = [], []
    for i in range(n):
        p = float(rng.uniform(0.02, 0.98))
        row = ({"mean": p, "std": 0.1, "interval": [p - 0.2, p + 0.2],
                "probabilities": {"no": 1 - p, "yes": p}, "label": "yes"} if i % 3 else
               {"mean": 3 * p, "std": 0.5, "interval": [3 * p - 1, 3 * p + 1]})
        rows = 2 if i % 7 == 0 else 1
        summaries.append([row] * rows)
        y = int(rng.random() < p) if i % 3 else float(rng.normal(3 * p, 0.6))
        outs.append(None if i % 4 == 0 else "maybe" if i % 31 == 0 else
                    [y, 1 - y] if rows == 2 and i % 3 else [y] if rows == 2 else y)
    return events.Events(
        request_id=np.array([f"r{i}" for i in range(n)], dtype=object),
        parent_id=np.array([None] * n, dtype=object), ts=np.arange(n, dtype=float) / 2,
        arm=arms, model_tag=arms.copy(), unit=np.array([str(i) for i in range(n)], object),
        latency_ms=rng.gamma(2, 3, n), status=statuses.astype(object), summary=summaries,
        outcome=outs, fallback_from=np.where(statuses == "fallback", "b", None).astype(object))


def _same(left: Fold, right: Fold) -> None:
    """Equal: counts, successes and kept values exactly; sums and moments to rounding."""
    a, b = left.to_json(), right.to_json()

    def walk(x, y, where):
        if isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for k in x:
                walk(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list):
            assert len(x) == len(y), where
            for k, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{k}]")
        elif isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-12, abs=1e-12), where
        else:
            assert x == y, where
    walk(a, b, "fold")


def test_merging_two_halves_equals_folding_the_whole():
    data = _mixed()
    half = np.arange(len(data)) < len(data) // 2
    whole = fold_events(data, timeline=TIMELINE)
    merged = fold_events(data.mask(half), timeline=TIMELINE).merge(
        fold_events(data.mask(~half), timeline=TIMELINE))
    _same(whole, merged)
    assert whole.skipped["binary"] and whole.coverage and whole.reliability  # all kinds seen
    assert sum(whole.expected.values()) == pytest.approx(
        sum(whole.served(a) for a in whole.counts))
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(Fold(counted=("ok",)))
    assert whole.merge(Fold()).to_json() == whole.to_json()
    no_timeline = fold_events(data)
    assert no_timeline.expected is None and no_timeline.merge(whole).expected is None


def test_json_round_trip_is_exact():
    fold = fold_events(_mixed(), timeline=TIMELINE)
    back = Fold.from_json(json.loads(json.dumps(fold.to_json())))
    assert back == fold
    assert back.to_json() == fold.to_json()


def test_score_values_are_kept_up_to_n_exact_then_only_their_moments():
    x = np.random.default_rng(0).normal(size=N_EXACT + 1).tolist()
    first = Score(Moments.of(x[:600]), x[:600])
    full = first.merge(Score(Moments.of(x[600:N_EXACT]), x[600:N_EXACT]))
    assert full.values == x[:N_EXACT]
    over = full.merge(Score(Moments.of(x[N_EXACT:]), x[N_EXACT:]))
    assert over.values is None and over.merge(Score(Moments.of([1.0]), [1.0])).values is None
    exact = Moments.of(x)
    assert (over.moments.n, over.moments.mean, over.moments.m2) == pytest.approx(
        (exact.n, exact.mean, exact.m2), rel=1e-12)
    # a fold's size does not grow with its events: 20 x N_EXACT outcomes per arm
    rng = np.random.default_rng(1)
    n = 40 * N_EXACT
    summary = [{"mean": 0.3, "std": 0.1, "interval": [0.1, 0.5],
                "probabilities": {"no": 0.7, "yes": 0.3}}]
    big = events.Events(
        request_id=np.arange(n).astype(str).astype(object), parent_id=np.full(n, None, object),
        ts=np.arange(n, dtype=float), arm=rng.choice(["a", "b"], n).astype(object),
        model_tag=np.full(n, "m", object), unit=np.full(n, "u", object),
        latency_ms=np.ones(n), status=np.full(n, "ok", object), summary=[summary] * n,
        outcome=rng.integers(0, 2, n).tolist())
    assert len(json.dumps(fold_events(big).to_json())) < 5_000


@pytest.mark.parametrize("chunk", [7, event_reads.CHUNK])
def test_the_stores_fold_is_the_in_memory_fold(eng, monkeypatch, chunk):
    """Read from the store in chunks (SQL counts, outcomes joined, JSON decoded per chunk)
    or folded from events.read in memory: the same statistics."""
    monkeypatch.setattr(event_reads, "CHUNK", chunk)
    fixture_store(eng, "fx", "log_score")
    timeline = control.weights_timeline(eng, "fx")
    assert event_reads.fold(eng, "fx", timeline=timeline) == \
        fold_events(events.read(eng, "fx"), timeline=timeline)
    since = 1_700_000_000.0 + 150
    assert event_reads.fold(eng, "fx", since=since) == \
        fold_events(events.read(eng, "fx", since=since))


def test_a_fold_does_not_depend_on_how_its_rows_were_chunked():
    """Sums run row by row and moments per block of BLOCK values of an arm, so any
    chunking of the same rows gives the same fold, bit for bit (the dashboard's history
    cuts the stream where the read-out does not; both must give one verdict)."""
    data = _mixed(n=5 * folding.BLOCK)
    rows = [(a, a, s, m, o) for a, s, m, o in zip(folding.assigned_arms(data), data.status,
                                                     data.summary, data.outcome, strict=True)]
    whole = folding.fold_rows(Fold(), rows)
    assert max(m.n for m in whole.continuous.values()) > folding.BLOCK
    folder = folding.Folder(Fold())
    cuts = np.sort(np.random.default_rng(0).choice(len(rows), 40, replace=False))
    for lo, hi in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        folder.add(rows[lo:hi])
        folder.snapshot()
    assert folder.close() == whole


def test_observe_scores_rows_as_the_old_formulas_did():
    """Log and Brier scores, per row, against the formulas the read-out used before
    (scipy's Normal log density, numpy's sums), and the same rows skipped."""
    rng = np.random.default_rng(2)
    cases = []
    for _ in range(200):
        p = float(rng.uniform(0, 1))
        cases.append(({"mean": p, "probabilities": {"x": 1 - p, "y": p}},
                      rng.choice([0, 1, "x", "y", True, 2, "z", None, 0.5])))
        m, s = float(rng.normal()), float(rng.gamma(2))
        cases.append(({"mean": m, "std": s, "interval": [m - s, m + s]},
                      rng.choice([float(rng.normal()), 1, "1.5", "a", None, float("nan")])))
    for row, value in cases:
        b, c, (log, brier_), _, _ = observations.observe(row, value)
        if "probabilities" in row:
            try:
                probs = np.array(list(row["probabilities"].values()))
                k = observations.class_index(row, value)
                want = (float(np.log(max(probs[k], 1e-12))),
                        float(np.sum((probs - np.eye(len(probs))[k]) ** 2)))
            except ValueError:
                want = (None, None)
        else:
            try:
                ref = float(stats.norm.logpdf(float(value), row["mean"], row["std"]))
                want = (ref if np.isfinite(ref) else None, None)
            except (TypeError, ValueError):
                want = (None, None)
        for got, ref in zip((log, brier_), want, strict=True):
            assert (got is None) == (ref is None), (row, value)
            assert ref is None or got == pytest.approx(ref, rel=1e-12), (row, value)


# -- the Bayesian bootstrap: exact, and its limit ------------------------------------------------

def test_the_exact_bootstrap_draws_what_dirichlet_draws():
    x = np.random.default_rng(4).normal(size=257)
    blocks = bootstrap.bayesian_bootstrap(x, 3000, np.random.default_rng(5), block=100)
    whole = np.random.default_rng(5).dirichlet(np.ones(257), size=3000) @ x
    np.testing.assert_allclose(blocks, whole, rtol=1e-13)
    assert np.isnan(bootstrap.bayesian_bootstrap(np.zeros(0), 5, np.random.default_rng())).all()


@pytest.mark.parametrize("n", [5, 200])
def test_the_bootstrap_variance_is_m2_over_n_n_plus_1(n):
    """The exact posterior variance of the Bayesian bootstrap mean, m2 / (n (n + 1)) (not
    the frequentist s^2 / n = m2 / (n (n - 1)), a third larger at n = 5), within 4 standard
    errors of the sample variance of 40,000 draws."""
    x = np.random.default_rng(n).exponential(size=n)
    draws = bootstrap.bayesian_bootstrap(x, 40_000, np.random.default_rng(0))
    m = Moments.of(x)
    var = m.m2 / (m.n * (m.n + 1))
    kurt = stats.kurtosis(draws, fisher=False)
    assert abs(draws.var() - var) < 4 * var * np.sqrt((kurt - 1) / len(draws))
    assert abs(draws.mean() - m.mean) < 4 * np.sqrt(var / len(draws))


def test_the_normal_limit_agrees_with_the_exact_bootstrap_at_n_exact():
    """At N_EXACT log scores (skewed: a long left tail), the limit's 5%, 50% and 95%
    quantiles stand within the tolerance of the exact bootstrap's: the Cornish-Fisher
    shift of a quantile by the posterior's skewness, |skew| / 6 |z^2 - 1| sd, plus 4
    standard errors of the difference of two Monte Carlo quantiles over DRAWS draws,
    sqrt(2 q (1 - q) / DRAWS) / phi(z) sd."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, N_EXACT)
    x = np.log(np.where(rng.random(N_EXACT) < p, p, 1 - p))
    samples = experiments.DRAWS
    m = Moments.of(x)
    exact = bootstrap.mean_draws(Score(m, x.tolist()), samples, np.random.default_rng(1))
    limit = bootstrap.mean_draws(Score(m, None), samples, np.random.default_rng(2))
    np.testing.assert_array_equal(  # at N_EXACT values, the exact path
        exact, bootstrap.bayesian_bootstrap(x, samples, np.random.default_rng(1)))
    sd = np.sqrt(m.m2 / (m.n * (m.n + 1)))
    skew = abs(stats.skew(exact))
    assert skew < 0.3  # the premise: nearly Normal at N_EXACT
    for q in (0.05, 0.5, 0.95):
        z = stats.norm.ppf(q)
        se = np.sqrt(2 * q * (1 - q) / samples) / stats.norm.pdf(z) * sd
        tol = skew / 6 * abs(z * z - 1) * sd + 4 * se
        assert abs(np.quantile(exact, q) - np.quantile(limit, q)) <= tol, q
    assert limit.std() == pytest.approx(sd, rel=4 / np.sqrt(2 * samples))


# -- readers built on folds ----------------------------------------------------------------------

def test_latency_quantile_is_numpys(eng):
    fixture_store(eng, "fx", "binary")
    data = readout.counted(events.read(eng, "fx"))
    for arm in ("a", "b"):
        lat = data.latency_ms[data.arm == arm]
        for q in (0.0, 0.5, 0.9, 0.99, 1.0):
            got, n = event_reads.latency_quantile(eng, "fx", arm, q)
            assert n == len(lat) and got == pytest.approx(np.nanquantile(lat, q), rel=1e-12)
    assert np.isnan(event_reads.latency_quantile(eng, "fx", "nobody", 0.99)[0])


def test_guardrails_read_the_window_as_a_fold(eng):
    from workbench import guardrails

    fixture_store(eng, "fx", "binary")
    config = parse({"name": "fx", "arms": [{"name": "a", "model": "m-a"},
                                           {"name": "b", "model": "m-b"}],
                    "guardrails": {"error_rate": 0.01, "p99_latency_ms": 1.0,
                                   "min_samples": 20}})
    since = 1_700_000_000.0 + 100
    window = event_reads.fold(eng, "fx", since=since)
    found = guardrails.breaches(window, config, {"a": 0.5, "b": 0.5})
    data = readout.counted(events.read(eng, "fx", since=since))
    mine = data.status[data.arm == "b"]
    assert [(b.arm, b.bound, b.samples) for b in found] == [("b", "error_rate", len(mine))]
    assert found[0].value == pytest.approx(np.mean(mine == "fallback"))
    late = guardrails.breaches(window, config, {"a": 0.5, "b": 0.5}, p99=lambda arm: 50.0)
    assert late[0].bound == "error_rate"  # one breach per arm, the first found


def test_the_dashboards_history_from_the_store_is_the_in_memory_history(eng):
    fixture_store(eng, "fx", "binary")
    config = readout.config_of(eng, "fx")
    result, history = dashboard_data.read_out_with_history(eng, config)
    assert result == readout.read_out(eng, "fx").to_dict()
    assert len(history) == 8 and [f.total() for _, f in history] == [400] * 8
    from_store = dashboard_data.evolution(history, config)
    in_memory = dashboard_data.evolution(events.read(eng, "fx"), config)
    assert len(from_store) == 16
    assert from_store.equals(in_memory)


def test_the_cached_read_out_is_computed_once_per_ttl(eng, monkeypatch):
    fixture_store(eng, "fx", "binary")
    calls = []
    real = readout.read_out
    monkeypatch.setattr(readout, "read_out", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = readout.cached(eng, "fx", ttl=60)
    second = readout.cached(eng, "fx", ttl=60)
    assert first == second and len(calls) == 1
    second["arms"].clear()  # each caller has its own copy
    assert readout.cached(eng, "fx", ttl=60)["arms"] and len(calls) == 1
    readout.cached(eng, "fx", ttl=0)
    assert len(calls) == 2
    monkeypatch.setenv("WORKBENCH_ANALYSIS_TTL_SECONDS", "0")
    readout.cached(eng, "fx")
    assert len(calls) == 3 and readout.ttl_seconds() == 0
    monkeypatch.delenv("WORKBENCH_ANALYSIS_TTL_SECONDS")
    assert readout.ttl_seconds() == 2


def test_schema_has_the_aggregates_table(eng):
    with eng.connect() as conn:
        assert conn.execute(schema.aggregates.select()).all() == []
