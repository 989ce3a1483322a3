"""Python's garbage collector, set for serving: what startup built stays out of every later
collection.

A serving process imports JAX, NumPyro, BentoML and their kin and compiles its models:
~300,000 objects the cyclic garbage collector tracks and never frees. Under load, the objects
of requests in flight live through young collections and fill the oldest generation, so
full collections come every few hundred requests, and each one walked every startup object:
~170 ms with the world stopped (benchmarks/RESULTS.md: the gateway spent about a third of
its time at 64 clients in them, and its p99 was one of them). :func:`freeze_startup`,
called once the models are compiled, collects once and moves every object alive into the
permanent generation (:func:`gc.freeze`), which collections skip: a full collection then
walks only what was made since, ~3 ms.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger("workbench.serving")

# Allocations between young collections (Python's default: 700). Each request in flight
# holds a few hundred tracked objects, so at 64 in flight the default collected every
# request or two and moved most of them into older generations; 10,000 cut the young
# collections ~70-fold and the gateway's throughput rose ~10% (the Predictor's ~4%).
YOUNG = 10_000


def freeze_startup() -> int:
    """Collect, then freeze every object alive out of later collections; how many are
    frozen now (safe to call again: later objects join the frozen ones)."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, *gc.get_threshold()[1:])
    frozen = gc.get_freeze_count()
    logger.info("workbench: %d objects of the startup kept out of garbage collection "
                "(%.2fs)", frozen, time.perf_counter() - started)
    return frozen
