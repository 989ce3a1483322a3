"""The garbage collector set for serving: startup's objects frozen out of collections, young
collections less frequent."""

from __future__ import annotations

import gc

from workbench import gc_tuning


def test_freeze_startup_keeps_what_is_alive_out_of_collections_and_raises_the_threshold():
    before = gc.get_threshold()
    survivor = {"kept": [1, 2, 3]}
    try:
        frozen = gc_tuning.freeze_startup()
        assert frozen == gc.get_freeze_count() > 1000
        assert not any(o is survivor for o in gc.get_objects())  # frozen: not tracked now
        assert gc.get_threshold() == (gc_tuning.YOUNG, *before[1:])
        later = {"made": ["after"]}
        assert any(o is later for o in gc.get_objects())  # later objects are collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
