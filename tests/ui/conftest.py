"""What the browser tests share: one Chromium (Debian's, no downloads) and seeded events."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import numpy as np
import pytest
from conftest import require

from workbench import events

CHROMIUM = "/usr/bin/chromium"


def log_events(eng, experiment: str, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows, outs = [], []
    for i in range(n):
        rid, arm, p = uuid.uuid4().hex, ("control", "treatment")[i % 2], rng.uniform(.05, .95)
        rows.append({"request_id": rid, "parent_id": None, "ts": time.time() - n + i,
                     "experiment": experiment, "arm": arm, "model_tag": f"{arm}:1",
                     "unit": str(i), "latency_ms": float(rng.gamma(2, 3)), "status": "ok",
                     "fallback_from": None, "n_rows": 1,
                     "summary": [{"mean": p, "std": 0.1, "interval": [p - 0.1, p + 0.1],
                                  "probabilities": {"no": 1 - p, "yes": p}, "label": "yes"}],
                     "instances": [[0.0] * 4]})
        outs.append({"request_id": rid, "ts": time.time(), "experiment": experiment,
                     "outcome": int(rng.random() < p)})
    events.write_now(eng, "predictions", rows)
    events.write_now(eng, "outcomes", outs)


@pytest.fixture(scope="session")
def browser():
    require(shutil.which("chromium") is not None or os.path.exists(CHROMIUM),
            "Chromium is not installed: apt-get install chromium (make test does this as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()
