"""NumPyro model functions and the registry that makes them servable.

A model is a plain NumPyro function ``model(X, y=None, **options)`` whose outcome is the
sample site ``obs`` (``y`` observed while fitting, ``None`` when predicting). Its
``kind`` says how the posterior predictive is summarised:

- ``binary``: ``obs`` is a Bernoulli; served as the probability of the positive class;
- ``multiclass``: ``obs`` is a Categorical; served as class probabilities;
- ``regression``: ``obs`` is any continuous distribution; served as draws of the outcome.

The built-in models see standardised features (fitted on the training data and stored in
the artifact), and regression models also a standardised target, so that their unit-scale
priors are sensible for any data. Register your own model with :func:`register`; it is
then fitted, saved, loaded and served exactly like the built-in ones::

    @workbench.register("poisson_counts", kind="regression", defaults={"prior_scale": 1.0})
    def poisson_counts(X, y=None, *, prior_scale=1.0):
        ...
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("obs", dist.Poisson(rate), obs=y)

A saved posterior names its model; loading it in a process where that name is not
registered raises :class:`~workbench.errors.UnknownModelKind` (the function is code and is
never stored in the artifact).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from workbench.errors import ConfigError, UnknownModelKind

Kind = Literal["binary", "multiclass", "regression"]
KINDS: tuple[str, ...] = ("binary", "multiclass", "regression")
OBS_SITE = "obs"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: the NumPyro function and how to serve it.

    Parameters
    ----------
    name
        The registry name, stored in every artifact fitted with it.
    fn
        ``fn(X, y=None, **options)``; the outcome is the sample site ``obs``.
    kind
        ``binary``, ``multiclass`` or ``regression``.
    defaults
        Default options (JSON-serialisable); fit-time overrides are merged over them.
    standardize_target
        For regression: fit on a standardised target and serve in original units.
    dims
        Optional names of each latent site's dimensions, from ``feature`` and ``class``
        (labelled with the feature and class names in the saved posterior and its plots).
    """

    name: str
    fn: Callable[..., None]
    kind: Kind
    defaults: Mapping[str, Any] = field(default_factory=dict)
    standardize_target: bool = True
    description: str = ""
    dims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def options(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The model's options: ``defaults | overrides``, refusing unknown names."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults) - {"n_classes"})
        if unknown:
            raise ConfigError(
                f"model {self.name!r} has no option {', '.join(map(repr, unknown))}",
                detail={"expected one of": sorted(self.defaults)},
            )
        return dict(self.defaults) | overrides


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    fn: Callable[..., None] | None = None,
    *,
    kind: Kind,
    defaults: Mapping[str, Any] | None = None,
    standardize_target: bool = True,
    description: str = "",
    dims: Mapping[str, tuple[str, ...]] | None = None,
) -> Any:
    """Register a NumPyro model function under ``name``; usable as a decorator.

    Re-registering a name replaces it (useful while iterating in a notebook).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}", detail={"expected one of": KINDS})

    def _register(f: Callable[..., None]) -> Callable[..., None]:
        _REGISTRY[name] = ModelSpec(
            name=name,
            fn=f,
            kind=kind,
            defaults=dict(defaults or {}),
            standardize_target=standardize_target,
            description=description or (f.__doc__ or "").strip().split("\n")[0],
            dims=dict(dims or {}),
        )
        return f

    return _register(fn) if fn is not None else _register


def get_spec(name: str) -> ModelSpec:
    """The registered model called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelKind(
            f"no model registered as {name!r}",
            detail={
                "expected one of": sorted(_REGISTRY),
                "hint": "register your model function with workbench.register() "
                "before loading a posterior fitted with it",
            },
        ) from None


def registered() -> dict[str, ModelSpec]:
    """A copy of the registry, by name."""
    return dict(_REGISTRY)


@register(
    "logistic",
    kind="binary",
    defaults={"prior_scale": 1.0},
    description="Bayesian logistic regression (binary outcome)",
    dims={"coef": ("feature",)},
)
def logistic(X: Any, y: Any = None, *, prior_scale: float = 1.0) -> None:
    """Bayesian logistic regression on standardised features."""
    n, n_features = X.shape
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 2.5))
    coef = numpyro.sample(
        "coef", dist.Normal(0.0, prior_scale).expand([n_features]).to_event(1)
    )
    logits = intercept + X @ coef
    with numpyro.plate("data", n):
        numpyro.sample(OBS_SITE, dist.Bernoulli(logits=logits), obs=y)


@register(
    "softmax",
    kind="multiclass",
    defaults={"prior_scale": 1.0},
    description="Bayesian multinomial logistic regression (multiclass outcome)",
    dims={"intercept": ("class",), "coef": ("feature", "class")},
)
def softmax(X: Any, y: Any = None, *, n_classes: int, prior_scale: float = 1.0) -> None:
    """Multinomial logistic regression; the first class is the reference (logit 0)."""
    n, n_features = X.shape
    intercept = numpyro.sample(
        "intercept", dist.Normal(0.0, 2.5).expand([n_classes - 1]).to_event(1)
    )
    coef = numpyro.sample(
        "coef", dist.Normal(0.0, prior_scale).expand([n_features, n_classes - 1]).to_event(2)
    )
    free = intercept + X @ coef
    logits = jnp.concatenate([jnp.zeros((n, 1), free.dtype), free], axis=-1)
    with numpyro.plate("data", n):
        numpyro.sample(OBS_SITE, dist.Categorical(logits=logits), obs=y)


@register(
    "linear",
    kind="regression",
    defaults={"prior_scale": 1.0, "robust": False},
    description="Bayesian linear regression (Normal, or Student-t with robust=True)",
    dims={"coef": ("feature",)},
)
def linear(
    X: Any, y: Any = None, *, prior_scale: float = 1.0, robust: bool = False
) -> None:
    """Linear regression on a standardised target; Student-t noise when ``robust``."""
    n, n_features = X.shape
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    coef = numpyro.sample(
        "coef", dist.Normal(0.0, prior_scale).expand([n_features]).to_event(1)
    )
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    loc = intercept + X @ coef
    if robust:
        nu = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
        likelihood = dist.StudentT(nu, loc, sigma)
    else:
        likelihood = dist.Normal(loc, sigma)
    with numpyro.plate("data", n):
        numpyro.sample(OBS_SITE, likelihood, obs=y)
