"""Realistic traffic for an experiment gateway: requests, then outcome feedback.

Units arrive at a Poisson rate; each sends one held-out row of a dataset (rows the models
did not see when fitted with the default split). The outcome sent back is the row's true
label, optionally with a planted effect per arm: for ``effect = +0.1`` a 0 becomes 1 with
probability 0.1 (a lift in the outcome rate; negative effects turn 1s into 0s); for a
continuous target the effect shifts the outcome by that many target standard deviations.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from workbench import datasets


@dataclass
class Summary:
    sent: int = 0
    ok: int = 0
    errors: Counter[int] = field(default_factory=Counter)
    arms: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    feedback: int = 0
    feedback_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {"sent": self.sent, "ok": self.ok, "errors": dict(self.errors),
                "arms": dict(self.arms), "fallbacks": self.fallbacks, "feedback": self.feedback,
                "feedback_errors": self.feedback_errors,
                "latency_ms": {"p50": float(np.percentile(lat, 50)),
                               "p99": float(np.percentile(lat, 99))},
                "outcome_rate": {a: float(np.mean(v)) for a, v in self.outcomes.items()}}


def outcome_for(y: float, arm: str, effects: dict[str, float], rng: np.random.Generator, *,
                categorical: bool, y_std: float = 1.0) -> float:
    """The outcome reported for a request served by ``arm`` whose true label is ``y``."""
    effect = effects.get(arm, 0.0)
    if not categorical:
        return float(y + effect * y_std)
    if effect > 0 and y == 0 and rng.random() < effect:
        return 1.0
    if effect < 0 and y == 1 and rng.random() < -effect:
        return 0.0
    return float(y)


def unit_attributes(values: dict[str, Sequence[str]], users: int, seed: int = 0
                    ) -> dict[str, dict[str, str]]:
    """Each unit's attributes (``user-0``...): one of each attribute's values, with Zipf
    weights (1, 1/2, 1/3...), fixed by ``seed``."""
    if not values:
        return {}
    rng = np.random.default_rng([seed, 1])
    drawn = {}
    for name, options in values.items():
        weights = 1.0 / np.arange(1, len(options) + 1)
        drawn[name] = rng.choice(len(options), size=users, p=weights / weights.sum())
    return {f"user-{u}": {name: str(values[name][k[u]]) for name, k in drawn.items()}
            for u in range(users)}


async def simulate(url: str, *, dataset: str = "breast_cancer", users: int = 200,
                   duration: float = 30.0, rate: float = 20.0,
                   effects: dict[str, float] | None = None, seed: int = 0,
                   concurrency: int = 32, progress: bool = True,
                   max_requests: int | None = None,
                   features: Sequence[str] | None = None,
                   api_key: str | None = None,
                   attributes: dict[str, Sequence[str]] | None = None) -> Summary:
    """Send traffic to the gateway at ``url`` for ``duration`` seconds (bounded).

    Rows come from ``dataset``'s held-out split, restricted to ``features`` (names) when
    the served models were fit to a subset of its columns. ``api_key`` (default
    ``$WORKBENCH_API_KEY``) needs the ``predict`` and ``feedback`` scopes when the gateway
    has access control on. ``attributes``: values per unit attribute (e.g. ``{"country":
    ["DE", "FR", "US"]}``); each unit keeps one value of each, drawn with Zipf weights
    (the first value the most common), sent with every request (segments).
    """
    from workbench.settings import load

    saved = load().api_key
    api_key = api_key or (saved.get_secret_value() if saved else None)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    effects = effects or {}
    data = datasets.load(dataset)
    if features:
        data = data.select(features)
    _, test = datasets.split(data, seed=0)
    y_std = float(np.std(data.y)) if not data.categorical else 1.0
    rng = np.random.default_rng(seed)
    summary = Summary()
    limit = asyncio.Semaphore(concurrency)
    budget = max_requests or int(rate * duration * 3 + 10)
    units = unit_attributes(attributes or {}, users, seed)

    async def one(http: httpx.AsyncClient, unit: str, i: int) -> None:
        async with limit:
            started = time.perf_counter()
            try:
                r = await http.post("/predict", json={
                    "unit": unit, "instances": [test.X[i].tolist()]}
                    | ({"attributes": units[unit]} if units else {}))
            except httpx.HTTPError:
                summary.errors[0] += 1
                return
            summary.latencies_ms.append((time.perf_counter() - started) * 1000)
            if r.status_code != 200:
                summary.errors[r.status_code] += 1
                return
            body = r.json()
            summary.ok += 1
            summary.arms[body["arm"]] += 1
            summary.fallbacks += "fallback_from" in body
            outcome = outcome_for(float(test.y[i]), body["arm"], effects, rng,
                                  categorical=data.categorical, y_std=y_std)
            summary.outcomes.setdefault(body["arm"], []).append(outcome)
            f = await http.post("/feedback", json={"request_id": body["request_id"],
                                                   "outcome": outcome})
            if f.status_code == 200:
                summary.feedback += 1
            else:
                summary.feedback_errors += 1

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("simulating"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeRemainingColumn()]
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task("traffic", total=duration, status="")
            tasks: set[asyncio.Task[None]] = set()
            start = time.monotonic()
            while (now := time.monotonic() - start) < duration and summary.sent < budget:
                unit = f"user-{rng.integers(users)}"
                t = asyncio.create_task(one(http, unit, int(rng.integers(len(test)))))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                summary.sent += 1
                bar.update(task, completed=now, status=f"{summary.ok} ok, "
                           f"{sum(summary.errors.values())} errors, "
                           + ", ".join(f"{a}: {n}" for a, n in sorted(summary.arms.items())))
                await asyncio.sleep(rng.exponential(1.0 / rate))
            if tasks:
                await asyncio.gather(*tasks)
            bar.update(task, completed=duration)
    return summary
