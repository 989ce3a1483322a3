"""Which models a Predictor serves, and where they come from.

A ``models`` spec (the bento argument ``models``, else ``$WORKBENCH_MODELS``, else
``champion``) names them: aliases, names and tags are resolved in the model store when the
service starts, items ``ref=tag`` are pinned (a built bento carries these, frozen at build
time). A Predictor built without its model (``--remote``) imports it at startup instead.
"""

from __future__ import annotations

import logging
from typing import Any

from workbench import redact
from workbench.errors import ModelNotFound
from workbench.settings import load

logger = logging.getLogger("workbench.serving")


def model_spec(spec: str | None) -> dict[str, str | None]:
    """The items of a ``models`` spec: ``{ref: tag}`` for items pinned as ``ref=tag``,
    ``{ref: None}`` for the others (see :func:`model_refs`)."""
    spec = spec or load().models or "champion"
    out: dict[str, str | None] = {}
    for item in (part.strip() for part in spec.split(",")):
        if item:
            ref, sep, tag = item.partition("=")
            out[ref] = tag or None
    return out


def model_refs(spec: str | None) -> dict[str, str]:
    """Which models a Predictor serves: ``{ref: tag}``, the first being the default.

    ``spec`` is a comma-separated list (the bento argument ``models``, else the
    ``WORKBENCH_MODELS`` environment variable, else ``champion``). Items ``alias=tag`` are
    taken as they are (a built bento carries these, frozen at build time); other items
    (aliases, names, tags) are resolved in the model store now.
    """
    from workbench import store

    out = {ref: tag or store.resolve(ref) for ref, tag in model_spec(spec).items()}
    if not out:
        raise ModelNotFound("no models named to serve",
                            detail={"expected": "e.g. --arg models=champion,challenger"})
    return out


def remote_models() -> dict[str, str]:
    """The model source of a Predictor built without its model (``--remote``).

    With ``$WORKBENCH_MODEL_URL`` (``s3://bucket/key.bentomodel``, or any URL BentoML's
    fsspec-based import reads), import the posterior exported there into the local model
    store and serve it by its tag; credentials and endpoint come from the environment
    (``AWS_ACCESS_KEY_ID``, ..., ``AWS_ENDPOINT_URL_S3``). Without it, serve what an
    initContainer imported into the store: ``$WORKBENCH_MODELS``, else its only model.
    """
    from workbench import store

    s = load()
    url = s.model_url
    if not url:
        if s.models:
            return model_refs(None)
        tags = [m.tag for m in store.list_models()]
        if len(tags) == 1:
            return {tags[0]: tags[0]}
        raise ModelNotFound(
            "this Predictor was built without its model: set WORKBENCH_MODEL_URL, or import "
            f"exactly one model into its store first (found {len(tags)})",
            detail={"expected": "WORKBENCH_MODEL_URL=s3://bucket/key, or WORKBENCH_MODELS",
                    "in the store": tags[:20]})
    logger.info("workbench: importing the model from %s", redact.url(url))
    tag = store.import_(url, exist_ok=True)
    logger.info("workbench: imported %s from %s", tag, redact.url(url))
    return {tag: tag}


def example_input(tag: str) -> dict[str, Any]:
    """A request body that the model ``tag`` accepts (zeros: the training mean)."""
    from workbench import store

    n_features = int(store.metadata(tag).get("features", 1))
    return {"instances": [[0.0] * n_features]}
