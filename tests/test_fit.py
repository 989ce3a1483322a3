"""Fitting: posterior recovery against known truth, diagnostics, held-out scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from workbench import datasets
from workbench.errors import DatasetError
from workbench.fit import DiagnosticsWarning, SamplerConfig, diagnose, fit

SEEDS = range(10)
TRUE = {"intercept": 1.0, "coef": np.array([0.8, -0.5, 0.0]), "sigma": 0.7}


def _simulate(seed: int, n: int = 150) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = TRUE["intercept"] + X @ TRUE["coef"] + rng.normal(0, TRUE["sigma"], n)
    return datasets.from_arrays(X, y, name=f"sim{seed}", categorical=False)


def _truth_in_model_units(posterior) -> dict[str, np.ndarray]:
    """The model sees standardised X and y: map the true parameters there."""
    loc, scale, y_loc, y_scale = (posterior.x_loc, posterior.x_scale, posterior.y_loc,
                                  posterior.y_scale)
    coef = TRUE["coef"] * scale / y_scale
    intercept = (TRUE["intercept"] + TRUE["coef"] @ loc - y_loc) / y_scale
    return {"intercept": np.array([intercept]), "coef": coef,
            "sigma": np.array([TRUE["sigma"] / y_scale])}


@pytest.mark.slow
def test_posterior_recovers_known_parameters_at_the_nominal_rate():
    """Central 50% and 90% intervals cover the true values at about their nominal rates.

    Over 10 simulated datasets x 5 parameters = 50 intervals per mass, the count covered
    must fall inside the central 99.9% range of Binomial(50, mass): a test that fails
    for intervals that are too narrow and (through the 50% intervals) too wide.
    """
    hits = {0.5: 0, 0.9: 0}
    total = 0
    for seed in SEEDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticsWarning)
            posterior = fit("linear", _simulate(seed), progress=False,
                            config=SamplerConfig(warmup=300, samples=600, chains=1, seed=seed,
                                                 test_fraction=0.1))
        truth = _truth_in_model_units(posterior)
        for site, true in truth.items():
            draws = posterior.flat_samples(np.float64)[site].reshape(-1, true.size)
            for mass in hits:
                lo, hi = np.quantile(draws, [(1 - mass) / 2, (1 + mass) / 2], axis=0)
                hits[mass] += int(np.sum((lo <= true) & (true <= hi)))
            total += true.size
    for mass, count in hits.items():
        lo, hi = stats.binom.ppf([0.0005, 0.9995], total, mass)
        assert lo <= count <= hi, f"{mass:.0%} intervals covered {count}/{total}"


def test_fit_records_diagnostics_scores_and_provenance():
    data = datasets.load("iris")
    posterior = fit("softmax", data, progress=False,
                    config=SamplerConfig(warmup=200, samples=200, chains=1, seed=3))
    d = posterior.diagnostics
    assert {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "ok"} <= set(d)
    assert posterior.scores["accuracy"] > 0.8  # chance is 1/3; iris is easy
    assert posterior.scores["rows"] == 30
    assert posterior.data["fingerprint"] == data.fingerprint()
    assert posterior.sampler["samples"] == 200 and posterior.sampler["algorithm"] == "NUTS"
    assert posterior.samples["coef"].shape == (1, 200, 4, 2)
    # the training inputs' summary, for the ood flag (tests/test_ood.py)
    assert set(posterior.inputs) == {"loc", "factor", "held_out", "edges", "shares"}
    assert posterior.inputs["factor"].shape == (4, 4) and len(posterior.inputs["held_out"]) \
        == posterior.data["rows_train"]


def test_regression_scores_include_coverage():
    posterior = fit("linear", _simulate(0, n=200), progress=False,
                    config=SamplerConfig(warmup=300, samples=400, chains=1))
    s = posterior.scores
    assert {"rmse", "lpd", "coverage_90"} <= set(s)
    assert 0.6 < s["rmse"] < 0.9  # the noise sd is 0.7
    assert 0.75 <= s["coverage_90"] <= 1.0


def test_failing_diagnostics_warn_visibly():
    with pytest.warns(DiagnosticsWarning, match="ESS"):
        posterior = fit("logistic", datasets.load("breast_cancer"), progress=False,
                        config=SamplerConfig(warmup=20, samples=30, chains=1))
    assert posterior.diagnostics["ok"] is False
    assert posterior.diagnostics["failures"]


def test_diagnose_counts_divergences():
    rng = np.random.default_rng(0)
    samples = {"a": rng.normal(size=(2, 1000))}
    diverging = np.zeros((2, 1000), bool)
    diverging[0, :3] = True
    d = diagnose(samples, diverging)
    assert d["divergences"] == 3 and not d["ok"]
    assert d["failures"] == ["3 divergent transitions"]


def test_model_and_target_must_agree():
    with pytest.raises(DatasetError, match="binary"):
        fit("logistic", datasets.load("iris"))
    with pytest.raises(DatasetError, match="continuous"):
        fit("softmax", datasets.load("diabetes"))
    with pytest.raises(DatasetError, match="categorical"):
        fit("linear", datasets.load("wine"))
