"""The model registry, and a user's own NumPyro model fitted, saved, loaded and served."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import workbench
from workbench import datasets, store
from workbench.errors import ConfigError, UnknownModelKind
from workbench.fit import fit
from workbench.models import get_spec, registered


def test_builtin_models_are_registered():
    kinds = {name: spec.kind for name, spec in registered().items()}
    assert kinds["logistic"] == "binary"
    assert kinds["softmax"] == "multiclass"
    assert kinds["linear"] == "regression"


def test_options_merge_over_defaults_and_refuse_unknown_names():
    spec = get_spec("linear")
    assert spec.options({"robust": True}) == {"prior_scale": 1.0, "robust": True}
    with pytest.raises(ConfigError, match="no option 'robustness'"):
        spec.options({"robustness": True})


def test_unknown_model_says_what_is_registered():
    with pytest.raises(UnknownModelKind) as info:
        get_spec("no-such-model")
    assert "logistic" in info.value.detail["expected one of"]


def test_robust_linear_fits_heavy_tailed_data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2))
    y = 2.0 * X[:, 0] + rng.standard_t(2, size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", workbench.DiagnosticsWarning)
        posterior = fit("linear", datasets.from_arrays(X, y), options={"robust": True},
                                  progress=False,
                                  config=workbench.SamplerConfig(warmup=200, samples=300,
                                                                 chains=1))
    assert "nu" in posterior.samples and posterior.options["robust"] is True


def test_user_registered_model_fits_saves_loads_and_predicts():
    """The README's example: a Poisson regression, with no edit to the library."""

    @workbench.register("poisson_counts", kind="regression", standardize_target=False,
                        defaults={"prior_scale": 1.0})
    def poisson_counts(X, y=None, *, prior_scale=1.0):
        intercept = numpyro.sample("intercept", dist.Normal(0.0, 2.0))
        coef = numpyro.sample("coef", dist.Normal(0.0, prior_scale).expand([X.shape[1]])
                              .to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("obs", dist.Poisson(jnp.exp(intercept + X @ coef)), obs=y)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    rate = np.exp(1.0 + 0.5 * X[:, 0])
    data = datasets.from_arrays(X, rng.poisson(rate).astype(float), categorical=False,
                                name="counts")
    posterior = fit("poisson_counts", data, progress=False,
                              config=workbench.SamplerConfig(warmup=300, samples=500,
                                                             chains=1))
    tag = store.save(posterior)
    loaded = store.get(tag)
    assert loaded.model == "poisson_counts"
    pred = workbench.Predictor(loaded).predict(X[:50])
    # The served mean tracks the true rate; the interval is of counts (noise included).
    assert np.corrcoef(pred.mean, rate[:50])[0, 1] > 0.9
    assert np.all(pred.lower <= pred.mean) and np.all(pred.upper >= pred.mean)
    assert np.all(pred.lower == np.round(pred.lower))  # quantiles of integer draws
