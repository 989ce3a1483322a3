"""Experiment configuration: a YAML file (path in ``WORKBENCH_EXPERIMENT``) or the default.

.. code-block:: yaml

    name: checkout-model-v2
    unit: user_id            # what a unit is (documentation; requests send "unit")
    mode: split              # or bandit: Thompson sampling on the metric's posterior
    arms:
      - {name: control, model: champion, weight: 0.5}
      - {name: treatment, model: challenger, weight: 0.5}
    control: control         # default: the first arm
    shadow: {name: shadow, model: candidate}   # optional: mirrored, logged, never returned
    metric: binary           # binary | continuous | log_score | brier
    decision: {prob_best: 0.95, min_outcomes: 100, min_effect: 0.0}
    bandit: {min_weight: 0.1, update_seconds: 10}
    guardrails:              # optional: breach one and the arm is paused (traffic to control)
      error_rate: 0.05       # max share of an arm's requests answered by the fallback
      p99_latency_ms: 500    # max p99 latency of an arm's requests
      coverage: 0.8          # min share of regression outcomes inside the served interval
      calibration_error: 0.1 # max expected calibration error of a binary classifier
      min_samples: 50        # requests (or outcomes) an arm needs before it is judged
      window_seconds: 600    # judged on the most recent window of traffic
    auto_conclude: {enabled: true}   # see workbench.decision for the rule and defaults
    check_seconds: 10        # how often guardrails and auto-conclude are evaluated
    segment_by: country      # optional: a unit attribute (sent as /predict's attributes) to
                             # read the binary metric out by, pooled (workbench.segments)

Without a file the default is a 50/50 split between the ``champion`` and ``challenger``
aliases on a binary outcome.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench import units
from workbench.decision import AutoConclude
from workbench.decision import parse as parse_auto_conclude
from workbench.errors import ConfigError
from workbench.settings import load as load_settings

METRICS = ("binary", "continuous", "log_score", "brier")
MODES = ("split", "bandit")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Arm:
    name: str
    model: str
    weight: float = 1.0


@dataclass(frozen=True)
class Decision:
    """When to declare a winner, and the smallest effect worth having.

    ``min_effect``: the read-out reports each arm's P(improvement over control >
    min_effect), a region of practical equivalence: a relative lift for ``binary`` and
    ``continuous`` metrics (0.02 is +2%), an absolute difference of the score for
    ``log_score`` and ``brier`` (for ``brier``, lower is better: the improvement is a
    decrease). 0 gives the chance to beat control; a negative value a non-inferiority
    margin.
    """

    prob_best: float = 0.95
    min_outcomes: int = 100
    min_effect: float = 0.0


@dataclass(frozen=True)
class Bandit:
    min_weight: float = 0.1
    update_seconds: float = 10.0


@dataclass(frozen=True)
class Guardrails:
    """Bounds an arm must stay within; None turns a bound off (all off by default)."""

    error_rate: float | None = None
    p99_latency_ms: float | None = None
    coverage: float | None = None
    calibration_error: float | None = None
    min_samples: int = 50
    window_seconds: float = 600.0

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.error_rate, self.p99_latency_ms,
                                            self.coverage, self.calibration_error))


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    arms: tuple[Arm, ...]
    unit: str = "unit"
    mode: str = "split"
    control: str = ""
    shadow: Arm | None = None
    metric: str = "binary"
    decision: Decision = field(default_factory=Decision)
    bandit: Bandit = field(default_factory=Bandit)
    salt: str = ""
    guardrails: Guardrails = field(default_factory=Guardrails)
    auto_conclude: AutoConclude = field(default_factory=AutoConclude)
    check_seconds: float = 10.0
    segment_by: str | None = None

    @property
    def control_arm(self) -> Arm:
        return next(a for a in self.arms if a.name == (self.control or self.arms[0].name))

    @property
    def weights(self) -> dict[str, float]:
        total = sum(a.weight for a in self.arms)
        return {a.name: a.weight / total for a in self.arms}

    def models(self) -> dict[str, str]:
        """Every model the experiment needs, by arm name (shadow included)."""
        out = {a.name: a.model for a in self.arms}
        if self.shadow:
            out[self.shadow.name] = self.shadow.model
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_config(self) -> dict[str, Any]:
        """The mapping :func:`parse` accepts (round-trips through the event store)."""
        d = asdict(self)
        d["arms"] = list(d["arms"])
        if d["shadow"] is None:
            del d["shadow"]
        return d


DEFAULT = {
    "name": "champion-vs-challenger",
    "arms": [{"name": "champion", "model": "champion", "weight": 0.5},
             {"name": "challenger", "model": "challenger", "weight": 0.5}],
    "metric": "binary",
}


def load(path: str | Path | None = None) -> ExperimentConfig:
    """The config at ``path``, else at ``$WORKBENCH_EXPERIMENT``, else the default."""
    path = path or load_settings().experiment
    if not path:
        return parse(DEFAULT)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read experiment config {str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment config {str(path)!r} is not valid YAML: {exc}") from None
    return parse(raw, source=str(path))


def parse(raw: Any, *, source: str = "config") -> ExperimentConfig:
    """Validate a config mapping; every problem is named with what was expected."""
    def fail(message: str, expected: Any) -> ConfigError:
        return ConfigError(f"{source}: {message}", detail={"expected": expected})

    if not isinstance(raw, dict):
        raise fail("must be a mapping", "name, arms, mode, metric, ...")
    known = {"name", "unit", "mode", "arms", "control", "shadow", "metric", "decision",
             "bandit", "salt", "guardrails", "auto_conclude", "check_seconds", "segment_by"}
    if unknown := sorted(set(raw) - known):
        raise fail(f"unknown keys {unknown}", sorted(known))
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(f"invalid name {name!r}", "letters, digits, '.', '_' or '-'")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, list) or len(arms_raw) < 2:
        raise fail("needs at least two arms", "arms: [{name, model, weight}, ...]")
    arms = tuple(_arm(a, fail) for a in arms_raw)
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise fail(f"arm names must be unique, got {names}", "distinct names")
    mode = raw.get("mode", "split")
    if mode not in MODES:
        raise fail(f"invalid mode {mode!r}", list(MODES))
    metric = raw.get("metric", "binary")
    if metric not in METRICS:
        raise fail(f"invalid metric {metric!r}", list(METRICS))
    control = raw.get("control", names[0])
    if control not in names:
        raise fail(f"control {control!r} is not an arm", names)
    shadow = _arm(raw["shadow"] | {"weight": 0.0}, fail, shadow=True) if raw.get("shadow") \
        else None
    if shadow and shadow.name in names:
        raise fail(f"shadow {shadow.name!r} clashes with an arm", "a distinct name")
    if isinstance(raw.get("decision"), dict):
        _check_min_effect(raw["decision"], metric, fail)
    decision = _section(raw, "decision", Decision, fail)
    bandit = _section(raw, "bandit", Bandit, fail)
    if not 0.5 < decision.prob_best < 1:
        raise fail(f"decision.prob_best {decision.prob_best}", "a probability in (0.5, 1)")
    if not 0 <= bandit.min_weight * len(arms) < 1:
        raise fail(f"bandit.min_weight {bandit.min_weight} leaves nothing to allocate",
                   f"in [0, {1 / len(arms):.3f})")
    guardrails = _guardrails(raw.get("guardrails"), fail)
    if guardrails.calibration_error is not None and metric == "continuous":
        raise fail("guardrails.calibration_error needs a classifier's metric", list(METRICS))
    check = raw.get("check_seconds", 10.0)
    if isinstance(check, bool) or not isinstance(check, int | float) or not check >= 0.1:
        raise fail(f"invalid check_seconds {check!r}", "a number of seconds >= 0.1")
    segment_by = raw.get("segment_by")
    if segment_by is not None and (not isinstance(segment_by, str) or
                                   not units.NAME.fullmatch(segment_by)):
        raise fail(f"invalid segment_by {segment_by!r}",
                   "the name of a unit attribute: letters, digits, '_', '.' or '-'")
    if segment_by is not None and metric != "binary":
        raise fail(f"segment_by reads out a binary metric, not {metric!r}",
                   "metric: binary, or no segment_by")
    return ExperimentConfig(name=name, arms=arms, unit=str(raw.get("unit", "unit")), mode=mode,
                            control=control, shadow=shadow, metric=metric, decision=decision,
                            bandit=bandit, salt=str(raw.get("salt", "")), guardrails=guardrails,
                            auto_conclude=parse_auto_conclude(raw.get("auto_conclude"),
                                                              source=f"{source}: auto_conclude"),
                            check_seconds=float(check), segment_by=segment_by)


def _check_min_effect(decision: dict[str, Any], metric: str, fail: Any) -> None:
    value = decision.get("min_effect", 0.0)
    relative = metric in ("binary", "continuous")
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or (relative and not -1 < value < 10):
        raise fail(f"invalid decision.min_effect {value!r}",
                   "a relative lift in (-1, 10) for the binary and continuous metrics "
                   "(0.02 is +2%)" if relative else
                   f"a finite difference of the {metric} score (the improvement over "
                   "control an arm must beat)")


def _guardrails(raw: Any, fail: Any) -> Guardrails:
    if raw is None:
        return Guardrails()
    names = list(Guardrails.__dataclass_fields__)
    if not isinstance(raw, dict) or set(raw) - set(names):
        raise fail(f"invalid guardrails {raw!r}", names)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                key in ("coverage", "error_rate", "calibration_error") and value > 1):
            raise fail(f"invalid guardrails.{key} {value!r}",
                       "a share in [0, 1]" if key in ("coverage", "error_rate",
                                                      "calibration_error")
                       else "a non-negative number")
        values[key] = int(value) if key == "min_samples" else float(value)
    return Guardrails(**values)


def _arm(raw: Any, fail: Any, *, shadow: bool = False) -> Arm:
    where = "shadow" if shadow else "each arm"
    if not isinstance(raw, dict) or not {"name", "model"} <= set(raw):
        raise fail(f"{where} needs a name and a model, got {raw!r}", "{name, model, weight}")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0 or (
            weight == 0 and not shadow):
        raise fail(f"arm {raw['name']!r} has weight {weight!r}", "a positive number")
    name = str(raw["name"])
    if not _NAME.match(name):
        raise fail(f"invalid arm name {name!r}", "letters, digits, '.', '_' or '-'")
    return Arm(name=name, model=str(raw["model"]), weight=float(weight))


def _section(raw: dict[str, Any], key: str, cls: Any, fail: Any) -> Any:
    value = raw.get(key) or {}
    fields = set(cls.__dataclass_fields__)
    if not isinstance(value, dict) or set(value) - fields:
        raise fail(f"invalid {key} {value!r}", sorted(fields))
    try:
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in value.items()})
    except (TypeError, ValueError):
        raise fail(f"invalid {key} {value!r}", sorted(fields)) from None
