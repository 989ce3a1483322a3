from __future__ import annotations

import numpy as np
import pytest
from conftest import make_posterior
from scipy.special import expit, softmax

from workbench.errors import InputError
from workbench.predict import Predictor


def _rows(n: int, n_features: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)


def test_binary_summary_matches_numpy_over_every_draw():
    posterior = make_posterior("binary")
    X = _rows(7)
    pred = Predictor(posterior).predict(X, interval_mass=0.8)
    s = posterior.flat_samples(np.float64)
    Xs = (X - posterior.x_loc) / posterior.x_scale
    p = expit(s["intercept"][:, None] + s["coef"] @ Xs.T)  # (draws, rows)
    np.testing.assert_allclose(pred.mean, p.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pred.std, p.std(0), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(pred.lower, np.quantile(p, 0.1, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pred.upper, np.quantile(p, 0.9, axis=0), rtol=1e-4, atol=1e-6)
    assert pred.label.tolist() == (p.mean(0) >= 0.5).astype(int).tolist()
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_multiclass_probabilities_match_numpy():
    posterior = make_posterior("multiclass")
    X = _rows(5)
    pred = Predictor(posterior).predict(X)
    s = posterior.flat_samples(np.float64)
    Xs = (X - posterior.x_loc) / posterior.x_scale
    free = s["intercept"][:, None, :] + np.einsum("rf,dfk->drk", Xs, s["coef"])
    logits = np.concatenate([np.zeros(free.shape[:2] + (1,)), free], axis=-1)
    probs = softmax(logits, axis=-1).mean(0)
    np.testing.assert_allclose(pred.probabilities, probs, rtol=1e-4, atol=1e-6)
    assert pred.label.tolist() == probs.argmax(1).tolist()
    np.testing.assert_allclose(pred.mean, probs.max(1), rtol=1e-4)
    records = pred.records()
    assert set(records[0]["probabilities"]) == {"a", "b", "c"}
    assert records[0]["label"] in {"a", "b", "c"}


def test_regression_predictive_includes_noise_in_original_units():
    posterior = make_posterior("regression")
    X = _rows(3)
    pred = Predictor(posterior).predict(X)
    s = posterior.flat_samples(np.float64)
    Xs = (X - posterior.x_loc) / posterior.x_scale
    mu = (s["intercept"][:, None] + s["coef"] @ Xs.T) * posterior.y_scale + posterior.y_loc
    sd = np.sqrt((s["sigma"] ** 2).mean() * posterior.y_scale**2 + mu.var(0))
    # Monte Carlo over 1000 draws: the mean to ~3 s.e., the spread to ~10%
    np.testing.assert_allclose(pred.mean, mu.mean(0), atol=3 * sd.max() / np.sqrt(1000))
    np.testing.assert_allclose(pred.std, sd, rtol=0.1)
    assert np.all(pred.lower < pred.mean) and np.all(pred.mean < pred.upper)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_row_is_the_same_alone_or_in_any_batch_and_nothing_recompiles(kind):
    predictor = Predictor(make_posterior(kind))
    predictor.warmup()
    compiled = predictor.compilations
    assert compiled == len(predictor.buckets)
    X = _rows(300, seed=7)
    alone = predictor.predict(X[:1], draws=5)
    for n in range(1, 301):
        batch = predictor.predict(X[:n], draws=5)
        assert len(batch) == n
        np.testing.assert_allclose(batch.mean[0], alone.mean[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(batch.lower[0], alone.lower[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(batch.upper[0], alone.upper[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(batch.draws[0], alone.draws[0], rtol=1e-5, atol=1e-7)
    # a different interval mass is an argument, not a new program
    predictor.predict(X[:3], interval_mass=0.5)
    assert predictor.compilations == compiled


def test_interval_widens_with_mass():
    predictor = Predictor(make_posterior("binary"))
    X = _rows(4)
    narrow, wide = predictor.predict(X, interval_mass=0.5), predictor.predict(X, interval_mass=0.99)
    assert np.all(wide.lower <= narrow.lower) and np.all(wide.upper >= narrow.upper)


def test_rows_as_objects_keyed_by_feature_name_equal_rows_as_lists():
    predictor = Predictor(make_posterior("binary"))
    X = _rows(3)
    as_dicts = [dict(zip(predictor.features, row.tolist(), strict=True)) for row in X]
    np.testing.assert_array_equal(predictor.predict(as_dicts).mean,
                                  predictor.predict(X.tolist()).mean)


BAD = [
    ("not a list", "list of rows"),
    ([], "empty"),
    ([[1, 2, 3]], "has 3 values"),
    ([[1, 2, 3, float("nan")]], "not a finite number"),
    ([[1, 2, 3, float("inf")]], "not a finite number"),
    ([[1, 2, 3, 1e39]], "not a finite number"),
    ([[1, 2, 3, "4"]], "a string is not a number"),
    ([[1, 2, 3, True]], "a boolean is not a number"),
    ([[1, 2, 3, [4]]], "a list is not a number"),
    ([[1, 2, 3, None]], "null is not a number"),
    ([{"x0": 1, "x1": 2, "x2": 3}], "missing features ['x3']"),
    ([{"x0": 1, "x1": 2, "x2": 3, "x3": 4, "zz": 5}], "unknown features ['zz']"),
    ([7], "row 0 is a int"),
    ([[0.0] * 4] * 11, "too many rows"),
]


@pytest.mark.parametrize(("instances", "message"), BAD)
def test_bad_input_names_the_problem(instances, message):
    predictor = Predictor(make_posterior("binary"), max_rows=10)
    with pytest.raises(InputError) as info:
        predictor.predict(instances)
    assert message in info.value.message
    assert info.value.to_dict()["error"] == info.value.message


@pytest.mark.parametrize("mass", [0, 1, 1.5, -0.1, "0.9", True, None])
def test_bad_interval_mass(mass):
    with pytest.raises(InputError, match="interval_mass"):
        Predictor(make_posterior("binary")).predict(_rows(1), interval_mass=mass)


def test_draws_are_capped_and_checked():
    predictor = Predictor(make_posterior("binary"))
    assert predictor.predict(_rows(2), draws=3).draws.shape == (2, 3)
    with pytest.raises(InputError, match="draws"):
        predictor.predict(_rows(1), draws=10_000)
    with pytest.raises(InputError, match="draws"):
        predictor.predict(_rows(1), draws=-1)
