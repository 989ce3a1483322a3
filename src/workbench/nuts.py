"""One NUTS chain as a pure JAX function, for fits repeated many times on data of one shape
(simulation-based calibration, segment read-outs).

``MCMC(..., jit_model_args=True)`` traces and compiles its sampling loop again on every
``run`` (seconds each); :func:`chain` returns ``(rng_key, *model_args) -> (draws,
diverging)`` built on NumPyro's functional ``hmc`` API, which a caller jits (or maps over
datasets inside one jit) once. Warmup and sampling are one ``lax.scan``, so the NUTS step
is compiled once; the start is NumPyro's ``init_to_uniform`` (uniform in (-2, 2) in the
unconstrained space) without ``initialize_model``'s search for a valid one, a while loop
that costs a compile of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

Chain = Callable[..., tuple[dict[str, jax.Array], jax.Array]]


def chain(model: Callable[..., None], *, warmup: int, samples: int, thin: int = 1,
          target_accept: float = 0.8, max_tree_depth: int = 10,
          deterministic: bool = False) -> Chain:
    """``(rng_key, *model_args) -> (draws, diverging)``: ``samples`` draws of one chain,
    one every ``thin`` steps after ``warmup`` steps, constrained, by site (with the model's
    deterministic sites when ``deterministic``), and whether each step after warmup
    diverged."""
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda *args: partial(potential_energy, model, args, {}),
        algo="NUTS")

    def run(rng_key: jax.Array, *args: Any) -> tuple[dict[str, jax.Array], jax.Array]:
        init_key, nuts_key = jax.random.split(rng_key)
        flat, unravel = ravel_pytree(_unconstrained(model, args))  # for the shapes
        z = unravel(jax.random.uniform(init_key, flat.shape, flat.dtype, -2.0, 2.0))
        state = init_kernel(z, warmup, target_accept_prob=target_accept,
                            max_tree_depth=max_tree_depth, model_args=args,
                            rng_key=nuts_key)

        def step(state: Any, _: Any) -> tuple[Any, tuple[Any, jax.Array]]:
            state = sample_kernel(state, model_args=args)
            return state, (state.z, state.diverging)

        _, (zs, diverging) = jax.lax.scan(step, state, None, length=warmup + samples * thin)
        zs = jax.tree.map(lambda v: v[warmup + thin - 1::thin], zs)
        draws = jax.vmap(lambda v: constrain_fn(model, args, {}, v,
                                                return_deterministic=deterministic))(zs)
        return draws, diverging[warmup:]

    return run


def _unconstrained(model: Callable[..., None], args: tuple[Any, ...]) -> dict[str, Any]:
    """A value of each latent site in the unconstrained space (its shape is what counts)."""
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args)
    return unconstrain_fn(model, args, {}, {k: s["value"] for k, s in trace.items()
                                            if s["type"] == "sample" and not s["is_observed"]})
