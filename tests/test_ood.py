"""Out-of-distribution flags: the training summary, the flag's false-alarm rate, and what a
served row carries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import make_posterior
from scipy import stats

from workbench import artifact, datasets, ood
from workbench.predict import Predictor


def _population(d: int, seed: int):
    """Correlated, unequally scaled Gaussian rows (a stand-in for real features)."""
    rng = np.random.default_rng(seed)
    mix, loc, scale = rng.normal(size=(d, d)) / np.sqrt(d), rng.normal(size=d) * 3, \
        rng.uniform(0.5, 5.0, d)
    return lambda n: (rng.normal(size=(n, d)) @ mix + 0.3 * rng.normal(size=(n, d))) \
        * scale + loc


@pytest.mark.parametrize(("rows", "features", "rate"), [(2000, 10, 0.01), (2000, 10, 0.05),
                                                        (455, 30, 0.05)])
def test_rows_from_the_training_distribution_are_flagged_at_the_configured_rate(
        rows, features, rate):
    draw = _population(features, seed=rows + features)
    X = draw(rows)
    loc, scale = X.mean(axis=0), X.std(axis=0)
    detector = ood.Detector.from_summary(ood.summarize((X - loc) / scale), loc, scale,
                                         rate=rate)
    fresh = 20_000
    flagged = int(detector.flags(detector.distance(draw(fresh))).sum())
    # The threshold is an estimate from `rows` held-out distances: its own sampling error
    # (a binomial quantile's) dominates the 20,000 fresh rows'.
    lo, hi = stats.binom.ppf([0.0005, 0.9995], rows, rate) / rows
    assert lo * 0.8 <= flagged / fresh <= hi * 1.2, \
        f"{flagged / fresh:.4f} of fresh rows flagged at rate {rate} (allowed {lo}..{hi})"
    print(f"\n{rows} rows x {features} features, rate {rate}: {flagged / fresh:.4f} flagged")


def test_rows_shifted_by_a_few_standard_deviations_are_flagged():
    draw = _population(10, seed=7)
    X = draw(2000)
    loc, scale = X.mean(axis=0), X.std(axis=0)
    detector = ood.Detector.from_summary(ood.summarize((X - loc) / scale), loc, scale,
                                         rate=0.01)
    # With 10 features the threshold is ~4.6: a shift of s standard deviations in one
    # feature puts a row at distance >= s on top of its usual ~sqrt(10).
    for sds, least in ((4.0, 0.75), (6.0, 0.99)):
        shifted = draw(2000)
        shifted[:, 3] += sds * scale[3]  # one feature, a few of its standard deviations
        share = detector.flags(detector.distance(shifted)).mean()
        assert share > least, f"a {sds}-sd shift flagged only {share:.3f} of the rows"
    assert not detector.flags(detector.distance(loc[None, :]))[0]  # the mean is typical


def test_no_summary_or_rate_zero_means_no_flag():
    posterior = make_posterior("binary")
    assert ood.Detector.from_summary(posterior.inputs, posterior.x_loc, posterior.x_scale,
                                     rate=0.01) is None
    record = Predictor(posterior, buckets=(1,), ood_rate=0.01).predict(
        [[0.0] * 4]).records()[0]
    assert "ood" not in record and "distance" not in record
    summary = ood.summarize(np.random.default_rng(0).normal(size=(50, 4)))
    assert ood.Detector.from_summary(summary, posterior.x_loc, posterior.x_scale,
                                     rate=0.0) is None


def test_the_summary_is_saved_with_the_artifact_and_served(tmp_path, any_posterior):
    rng = np.random.default_rng(1)
    d = len(any_posterior.feature_names)
    Xs = rng.normal(size=(300, d))
    posterior = replace(any_posterior, inputs=ood.summarize(Xs))
    loaded = artifact.load(artifact.save(posterior, tmp_path / "posterior.nc"))
    assert set(loaded.inputs) == {"loc", "factor", "held_out", "edges", "shares"}
    for key, value in posterior.inputs.items():
        np.testing.assert_allclose(loaded.inputs[key], value)
    predictor = Predictor(loaded, buckets=(1, 4), ood_rate=0.01)
    typical = posterior.x_loc
    far = posterior.x_loc + 8 * posterior.x_scale
    records = predictor.predict([typical.tolist(), far.tolist()]).records()
    assert [r["ood"] for r in records] == [False, True]
    assert records[0]["distance"] < predictor.ood.threshold < records[1]["distance"]


def test_a_row_of_small_constants_is_flagged_for_a_model_of_real_data():
    """As a new user tried it: a row of 0.01s is far from the breast-cancer features, and
    was served with a confident-looking interval and no warning. (The summary is what
    ``fit`` stores, from the same training split; tests/test_fit.py checks that it does.)"""
    data = datasets.load("breast_cancer")
    train, test = datasets.split(data, test_fraction=0.2, seed=0)
    x_loc, x_scale = train.X.mean(axis=0), train.X.std(axis=0)
    posterior = replace(make_posterior("binary", n_features=len(data.feature_names)),
                        feature_names=data.feature_names, x_loc=x_loc, x_scale=x_scale,
                        inputs=ood.summarize((train.X - x_loc) / x_scale))
    predictor = Predictor(posterior, buckets=(4,), ood_rate=0.01)
    constants, typical = [0.01] * len(data.feature_names), x_loc.tolist()
    far, near = predictor.predict([constants, typical]).records()
    assert far["ood"] and not near["ood"], (far["distance"], near["distance"])
    share = predictor.ood.flags(predictor.ood.distance(test.X)).mean()
    print(f"\nbreast cancer, held-out rows flagged at rate 0.01: {share:.3f} of {len(test)}")
    assert share < 0.1  # real features are heavier-tailed than a Gaussian: some more
