"""What a Predictor serves at one moment: its versions, and every name it answers to.

A :class:`Lineup` is immutable and replaced whole (one attribute assignment), so a request
reading it once sees a change of version entirely or not at all; a version no ref uses any
more stays reachable by its exact tag (retired) until it is dropped, so that requests which
named it a moment before the change still complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.artifact import Posterior
from workbench.batching import MicroBatcher
from workbench.predict import Predictor

QUEUE_ROWS = 65_536  # rows allowed to wait in a model's batcher (past it: 503)
INLINE_ROWS = 8  # a request this small that finds its batcher idle runs on the event loop


@dataclass
class Served:
    """One posterior being served."""

    tag: str
    posterior: Posterior
    predictor: Predictor
    batcher: MicroBatcher
    aliases: list[str] = field(default_factory=list)
    sample_output: list[dict[str, Any]] | None = None
    features: Any = None  # workbench.feature_lookup.OnlineFeatures: rows by entity key

    @property
    def name(self) -> str:
        return self.tag.split(":")[0]

    @property
    def version(self) -> str:
        return self.tag.split(":")[-1]


@dataclass(frozen=True)
class Lineup:
    """What a :class:`~workbench.serving.ModelServer` serves at one moment; never changed.

    ``refs`` is ``{ref: tag}`` (the first the default), ``models`` ``{tag: Served}`` in that
    order, ``lookup`` every ref, model name and tag to its :class:`Served`; ``retired``
    versions no ref uses any more, still reachable by their exact tag until dropped.
    """

    refs: dict[str, str] = field(default_factory=dict)
    models: dict[str, Served] = field(default_factory=dict)
    lookup: dict[str, Served] = field(default_factory=dict)
    retired: dict[str, Served] = field(default_factory=dict)


def lineup(refs: Mapping[str, str], pool: Mapping[str, Served],
           retired: Mapping[str, Served] | None = None) -> Lineup:
    """Serve ``refs`` with the loaded versions in ``pool`` (``{tag: Served}``)."""
    models = {tag: replace(pool[tag], aliases=[r for r, t in refs.items() if t == tag and r != tag])
              for tag in dict.fromkeys(refs.values())}
    lookup: dict[str, Served] = {}
    for served in models.values():  # aliases win over names, tags over both
        lookup.setdefault(served.name, served)
    for tag, served in models.items():
        lookup.update(dict.fromkeys(served.aliases, served))
        lookup[tag] = served
    retired = {t: s for t, s in (retired or {}).items() if t not in models}
    for tag, served in retired.items():
        lookup.setdefault(tag, served)
    return Lineup(dict(refs), models, lookup, retired)


def serve(tag: str, posterior: Posterior, *, buckets: tuple[int, ...], max_rows: int,
          max_queue_rows: int = QUEUE_ROWS, features: Any = None,
          ood_rate: float | None = None) -> Served:
    """``posterior`` ready to be served as ``tag``: its :class:`Predictor` (compiled per
    shape bucket at warm-up) and a :class:`MicroBatcher` stacking up to the largest bucket
    of rows per call. The Predictor service and stream consumers build theirs here."""
    predictor = Predictor(posterior, buckets=buckets, max_rows=max_rows, ood_rate=ood_rate)
    batcher = MicroBatcher(lambda mass, X: predictor.summarize(X, mass),
                           max_rows=predictor.buckets[-1], max_queue_rows=max_queue_rows,
                           name=tag, inline_rows=INLINE_ROWS)
    return Served(tag, posterior, predictor, batcher, features=features)
