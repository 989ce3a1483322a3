"""What a server answers to: precedence of aliases, names and tags; retired versions."""

from __future__ import annotations

from typing import Any

from workbench.lineup import Served, lineup


def served(tag: str) -> Served:
    stand_in: Any = None  # the lineup never touches the posterior, predictor or batcher
    return Served(tag, stand_in, stand_in, stand_in)


def test_aliases_win_over_names_and_tags_over_both():
    pool = {t: served(t) for t in ("m:1", "m:2", "r:1")}
    now = lineup({"champion": "m:1", "m": "m:2", "r:1": "r:1"}, pool)
    assert list(now.models) == ["m:1", "m:2", "r:1"]  # the order asked for: first is default
    assert now.models["m:1"].aliases == ["champion"] and now.models["m:2"].aliases == ["m"]
    assert now.models["r:1"].aliases == []
    assert {ref: s.tag for ref, s in now.lookup.items()} == {
        "champion": "m:1", "m": "m:2", "m:1": "m:1", "m:2": "m:2", "r": "r:1", "r:1": "r:1"}
    assert pool["m:1"].aliases == []  # the pool's objects are left as they were


def test_a_retired_version_answers_by_its_exact_tag_only():
    pool = {t: served(t) for t in ("m:1", "m:2")}
    now = lineup({"champion": "m:2"}, pool, retired={"m:1": pool["m:1"]})
    assert list(now.models) == ["m:2"] and list(now.retired) == ["m:1"]
    assert now.lookup["m:1"].tag == "m:1" and now.lookup["m"].tag == "m:2"
    again = lineup({"champion": "m:1"}, pool, retired={"m:1": pool["m:1"]})
    assert again.retired == {}  # served again: not retired any more
