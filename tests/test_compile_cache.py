"""JAX's persistent compilation cache: a second process loads the buckets the first one
compiled (counted by JAX's own cache-hit events); where the cache lives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

WARM = """
import json, sys
sys.path.insert(0, {tests!r})
import jax.monitoring
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
from conftest import make_posterior
from workbench import compile_cache
from workbench.predict import Predictor
Predictor(make_posterior("regression", n_features=3, draws=50), buckets=(1, 4)).warmup()
print(json.dumps({{"dir": compile_cache.enable(),
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}}))
"""


def _warm(setting: str) -> dict:
    out = subprocess.run([sys.executable, "-c", WARM.format(tests=str(TESTS))],
                         env=os.environ | {"WORKBENCH_COMPILATION_CACHE": setting},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    first = _warm(str(tmp_path / "cache"))
    assert first["dir"] == str(tmp_path / "cache") and first["misses"] >= 2
    assert first["hits"] == 0 and any((tmp_path / "cache").iterdir())
    second = _warm(str(tmp_path / "cache"))
    assert second["hits"] >= 2 and second["misses"] == 0, second


def test_where_the_cache_lives(monkeypatch, tmp_path):
    from workbench import compile_cache

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_COMPILATION_CACHE", raising=False)
    assert compile_cache.directory() == tmp_path / "workbench" / "jax-cache"
    monkeypatch.setenv("WORKBENCH_COMPILATION_CACHE", "~/elsewhere")
    assert compile_cache.directory() == Path.home() / "elsewhere"
    monkeypatch.setenv("WORKBENCH_COMPILATION_CACHE", "OFF")
    assert compile_cache.directory() is None
