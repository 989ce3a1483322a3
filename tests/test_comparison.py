from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import make_posterior
from scipy.special import log_expit
from scipy.stats import norm

from workbench import datasets
from workbench.comparison import compare, loo, training_rows
from workbench.errors import DatasetError
from workbench.fit import DiagnosticsWarning, SamplerConfig, fit, log_likelihood, pointwise_lpd


def _standardised(posterior, X):
    return (X - posterior.x_loc) / posterior.x_scale


def test_log_likelihood_of_a_logistic_regression_is_the_closed_form_in_float64():
    p = make_posterior("binary")
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)) * 3, rng.integers(0, 2, 30)
    z = (p.samples["intercept"][..., None].astype(np.float64)
         + np.einsum("nf,cdf->cdn", _standardised(p, X), p.samples["coef"].astype(np.float64)))
    expected = np.where(y == 1, log_expit(z), log_expit(-z))
    ll = log_likelihood(p, X, y)
    assert ll.dtype == np.float64 and ll.shape == (2, 500, 30)
    np.testing.assert_allclose(ll, expected, rtol=1e-9, atol=1e-12)


def test_log_likelihood_of_a_regression_is_in_the_targets_units():
    p = make_posterior("regression")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 4))
    y = 10.0 + 3.0 * rng.normal(size=20)
    f = lambda s: p.samples[s].astype(np.float64)  # noqa: E731
    loc = f("intercept")[..., None] + np.einsum("nf,cdf->cdn", _standardised(p, X), f("coef"))
    expected = norm.logpdf(y, p.y_loc + p.y_scale * loc, p.y_scale * f("sigma")[..., None])
    np.testing.assert_allclose(log_likelihood(p, X, y), expected, rtol=1e-9)
    lpd = np.log(np.mean(np.exp(expected.reshape(-1, 20)), axis=0))
    np.testing.assert_allclose(pointwise_lpd(p, X, y), lpd, rtol=1e-9)


@pytest.fixture(scope="module")
def signal_and_no_signal():
    """Two fits of data where x0 drives the outcome: one free to learn it, one whose
    prior pins the coefficients near zero."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (rng.uniform(size=200) < 1 / (1 + np.exp(-2.5 * X[:, 0]))).astype(int)
    data = datasets.from_arrays(X, y, name="signal", target_names=("no", "yes"))
    config = SamplerConfig(warmup=200, samples=300, chains=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        free = fit("logistic", data, config=config, progress=False)
        pinned = fit("logistic", data, config=config, options={"prior_scale": 0.01},
                     progress=False)
    return data, free, pinned


def test_compare_ranks_the_model_that_can_see_the_signal_first(signal_and_no_signal):
    data, free, pinned = signal_and_no_signal
    table = compare({"pinned": pinned, "free": free}, data)
    assert list(table.index) == ["free", "pinned"]
    assert table.loc["pinned", "elpd_diff"] > 4 * table.loc["pinned", "dse"]
    assert table.loc["free", "bad_k"] == 0
    assert table.loc["free", "weight"] > 0.9


def test_loo_is_close_to_the_in_sample_lpd_minus_its_penalty(signal_and_no_signal):
    data, free, _ = signal_and_no_signal
    result = loo(free, data)
    train = training_rows(free, data)
    in_sample = float(np.sum(pointwise_lpd(free, train.X, train.y)))
    assert len(train) == free.data["rows_train"] == result.n_data_points
    assert result.elpd_loo < in_sample
    assert result.elpd_loo == pytest.approx(in_sample - result.p_loo, abs=0.5)
    assert 1.0 < result.p_loo < 5.0  # ~3 parameters, mildly regularised


def test_loo_refuses_data_the_model_was_not_fit_to(signal_and_no_signal):
    data, free, _ = signal_and_no_signal
    other = datasets.from_arrays(data.X + 1, data.y, name="signal", target_names=("no", "yes"))
    with pytest.raises(DatasetError, match="fit to other data"):
        loo(free, other)
    with pytest.raises(DatasetError, match="at least two"):
        compare({"free": free}, data)
