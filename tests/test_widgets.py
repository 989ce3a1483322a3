from __future__ import annotations

import numpy as np

from workbench import datasets
from workbench.widgets import FitForm, models_for


def _data(n: int = 120) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    return datasets.from_arrays(X, y, name="form", target_names=("no", "yes"))


def test_models_offered_match_the_target():
    assert {"logistic", "softmax"} <= set(models_for(_data()))
    assert "linear" not in models_for(_data())
    regression = models_for(datasets.load("diabetes"))
    assert "linear" in regression and "logistic" not in regression
    assert "logistic" not in models_for(datasets.load("iris"))


def test_clicking_fit_refits_with_the_controls_values():
    seen = []
    form = FitForm(_data(), warmup=100, samples=100, chains=1, on_fit=seen.append)
    form.prior_scale.value = 0.1
    form.samples.value = 200
    form.chains.value = 2
    form.button.click()
    p = form.posterior
    assert p is not None and seen == [p]
    assert p.options["prior_scale"] == 0.1
    assert (p.sampler["samples"], p.sampler["warmup"], p.sampler["chains"]) == (200, 100, 2)
    assert p.samples["coef"].shape == (2, 200, 2)
    shown = "".join(o.get("text", "") for o in form.output.outputs)
    assert "max R-hat" in shown and "held-out" in shown
    assert not form.button.disabled and form.button.description == "Fit"


def test_the_form_renders_as_a_widget():
    bundle = FitForm(_data())._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
