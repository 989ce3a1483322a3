from __future__ import annotations

import pytest

from workbench.config import DEFAULT, load, parse
from workbench.errors import ConfigError


def test_default_is_a_5050_split_between_champion_and_challenger(monkeypatch):
    monkeypatch.delenv("WORKBENCH_EXPERIMENT", raising=False)
    config = load()
    assert config.mode == "split" and config.metric == "binary"
    assert config.weights == {"champion": 0.5, "challenger": 0.5}
    assert config.models() == {"champion": "champion", "challenger": "challenger"}
    assert config.control_arm.name == "champion"


def test_yaml_file_by_env_var(tmp_path, monkeypatch):
    path = tmp_path / "exp.yaml"
    path.write_text("name: e1\nmode: bandit\nmetric: log_score\narms:\n"
                    "  - {name: a, model: champion, weight: 3}\n"
                    "  - {name: b, model: challenger, weight: 1}\n"
                    "shadow: {name: s, model: candidate}\nbandit: {min_weight: 0.2}\n")
    monkeypatch.setenv("WORKBENCH_EXPERIMENT", str(path))
    config = load()
    assert config.weights == {"a": 0.75, "b": 0.25}
    assert config.shadow.model == "candidate" and config.bandit.min_weight == 0.2
    assert config.models() == {"a": "champion", "b": "challenger", "s": "candidate"}


@pytest.mark.parametrize(("raw", "message"), [
    ([], "must be a mapping"),
    ({"name": "x", "arms": [{"name": "a", "model": "m"}]}, "at least two arms"),
    ({"name": "x", "arms": [{"name": "a", "model": "m"}, {"name": "a", "model": "n"}]},
     "unique"),
    ({"name": "x", "arms": [{"name": "a"}, {"name": "b", "model": "n"}]}, "needs a name and"),
    ({"name": "x", "arms": [{"name": "a", "model": "m", "weight": -1},
                            {"name": "b", "model": "n"}]}, "weight -1"),
    ({"name": "x", "mode": "greedy", "arms": [{"name": "a", "model": "m"},
                                              {"name": "b", "model": "n"}]}, "invalid mode"),
    ({"name": "x", "metric": "revenue", "arms": [{"name": "a", "model": "m"},
                                                 {"name": "b", "model": "n"}]},
     "invalid metric"),
    ({"name": "x", "control": "c", "arms": [{"name": "a", "model": "m"},
                                            {"name": "b", "model": "n"}]}, "not an arm"),
    ({"name": "x", "typo": 1, "arms": []}, "unknown keys ['typo']"),
    ({"name": "x", "bandit": {"min_weight": 0.6}, "arms": [{"name": "a", "model": "m"},
                                                           {"name": "b", "model": "n"}]},
     "leaves nothing"),
    ({"name": "bad name!", "arms": []}, "invalid name"),
])
def test_invalid_configs_say_what_is_wrong(raw, message):
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert message in info.value.message
    assert info.value.detail["expected"]


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)
    assert DEFAULT["metric"] == "binary"


TWO_ARMS = [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]


@pytest.mark.parametrize(("metric", "value"), [
    ("binary", float("nan")), ("binary", float("inf")), ("binary", True), ("binary", "2%"),
    ("binary", -1.0), ("continuous", 10), ("brier", float("-inf")), ("log_score", [0.1]),
])
def test_invalid_min_effect_says_what_is_expected(metric, value):
    with pytest.raises(ConfigError) as info:
        parse({"name": "x", "metric": metric, "arms": TWO_ARMS,
               "decision": {"min_effect": value}})
    assert f"invalid decision.min_effect {value!r}" in info.value.message
    expected = info.value.detail["expected"]
    assert ("relative lift" in expected) == (metric in ("binary", "continuous"))


def test_min_effect_defaults_to_zero_and_round_trips():
    assert parse({"name": "x", "arms": TWO_ARMS}).decision.min_effect == 0.0
    config = parse({"name": "x", "metric": "brier", "arms": TWO_ARMS,
                    "decision": {"min_effect": -0.01, "prob_best": 0.9}})
    assert config.decision.min_effect == -0.01 and config.decision.prob_best == 0.9
    assert parse(config.to_config()) == config
