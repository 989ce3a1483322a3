"""`workbench demo` end to end (smaller sampler settings and less traffic than make demo)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workbench import events, keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_runs_from_an_empty_store(tmp_path):
    env = os.environ | {"BENTOML_HOME": str(tmp_path / "bentoml"),
                        "WORKBENCH_HOME": str(tmp_path / "wb"),
                        "WORKBENCH_AUTH": "on"}  # as make demo runs it: nothing left open
    env.pop("WORKBENCH_DB_URL", None)
    env.pop("WORKBENCH_EXPERIMENT", None)
    env.pop("WORKBENCH_MODELS", None)
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "demo", "--samples", "400",
                          "--warmup", "300", "--traffic-seconds", "5"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    experiment = out.stdout.strip().splitlines()[-1]
    for text in ("1/7 fit", "R-hat", "stored", "90% interval", "4/7 features",
                 "online, patient 1000", "5/7 build", "ready at", "P(best)", "decision:"):
        assert text in out.stdout, text
    eng = events.engine(f"sqlite:///{tmp_path / 'wb' / 'events.db'}")
    data = events.read(eng, experiment)
    assert len(data) > 50 and set(data.arm) == {"champion", "challenger"}
    made = [k for k in keys.list_keys(eng) if k["name"] == experiment]  # its own key, used
    assert made and "API key" in out.stderr and "wb_" not in out.stdout
