"""ipywidgets for the notebooks: pick a model, its prior and the sampler, and refit.

:class:`FitForm` holds no logic of its own: *Fit* calls :func:`workbench.fit.fit` with
what the controls say and shows the diagnostics and held-out scores; the latest posterior
is ``form.posterior``, ready for :func:`workbench.store.save`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from workbench.artifact import Posterior
from workbench.datasets import Dataset


def models_for(data: Dataset) -> list[str]:
    """Registered models that can be fit to ``data``'s target."""
    from workbench.models import registered

    if not data.categorical:
        kinds = {"regression"}
    else:
        kinds = {"binary", "multiclass"} if len(data.target_names) == 2 else {"multiclass"}
    return sorted(name for name, spec in registered().items() if spec.kind in kinds)


class FitForm:
    """A form that refits ``data`` with NUTS on every click of *Fit*.

    Parameters
    ----------
    data
        The dataset to fit.
    model, prior_scale, warmup, samples, chains
        The controls' starting values.
    on_fit
        Called with each new posterior (e.g. to plot it).
    """

    def __init__(self, data: Dataset, *, model: str = "logistic", prior_scale: float = 1.0,
                 warmup: int = 500, samples: int = 1000, chains: int = 2,
                 on_fit: Callable[[Posterior], Any] | None = None) -> None:
        import ipywidgets as w

        self.data = data
        self.on_fit = on_fit
        self.posterior: Posterior | None = None
        style = {"description_width": "90px"}
        self.model = w.Dropdown(options=models_for(data), value=model, description="model",
                                style=style)
        self.prior_scale = w.FloatLogSlider(value=prior_scale, base=10, min=-2, max=1,
                                            step=0.1, description="prior scale", style=style)
        self.warmup = w.IntSlider(value=warmup, min=100, max=2000, step=100,
                                  description="warmup", style=style)
        self.samples = w.IntSlider(value=samples, min=100, max=4000, step=100,
                                   description="draws", style=style)
        self.chains = w.IntSlider(value=chains, min=1, max=4, description="chains",
                                  style=style)
        self.button = w.Button(description="Fit", button_style="primary", icon="play")
        self.output = w.Output()
        self.button.on_click(lambda _: self.fit())
        self.widget = w.VBox([w.HBox([self.model, self.prior_scale]),
                              w.HBox([self.warmup, self.samples, self.chains]),
                              self.button, self.output])

    def fit(self) -> Posterior:
        """Fit with the current controls, show the result, and return the posterior."""
        from workbench.fit import DiagnosticsWarning, SamplerConfig, fit
        from workbench.models import get_spec

        options = ({"prior_scale": self.prior_scale.value}
                   if "prior_scale" in get_spec(self.model.value).defaults else {})

        self.button.disabled, self.button.description = True, "Fitting..."
        self.output.clear_output()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DiagnosticsWarning)  # shown below instead
                self.posterior = fit(
                    self.model.value, self.data, options=options,
                    config=SamplerConfig(warmup=self.warmup.value, samples=self.samples.value,
                                         chains=self.chains.value),
                    progress=False)
            self.output.append_stdout(summary(self.posterior) + "\n")
            if self.on_fit is not None:
                self.on_fit(self.posterior)
        finally:
            self.button.disabled, self.button.description = False, "Fit"
        return self.posterior

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def summary(posterior: Posterior) -> str:
    """One line of diagnostics and one of held-out scores."""
    d, s = posterior.diagnostics, posterior.scores
    verdict = "ok" if d["ok"] else "FAILED: " + "; ".join(d["failures"])
    scores = ", ".join(f"{k} {v:.3f}" for k, v in s.items() if isinstance(v, float))
    return (f"{posterior.name} {posterior.options}: max R-hat {d['max_rhat']:.3f}, min bulk "
            f"ESS {d['min_ess_bulk']:.0f}, {d['divergences']} divergences -> {verdict}\n"
            f"held-out ({s.get('rows', 0)} rows): {scores}")
