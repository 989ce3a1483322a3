from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_posterior

from workbench import store
from workbench.errors import ConfigError, CorruptArtifact, DiagnosticsRefused, ModelNotFound


def test_save_get_list(bentoml_home):
    posterior = make_posterior("binary", name="store-basic")
    tag = store.save(posterior)
    assert tag.startswith("store-basic:")
    assert (bentoml_home / "models" / "store-basic").is_dir()  # BentoML's own store
    loaded = store.get(tag)
    assert loaded.model_id == posterior.model_id
    assert store.resolve("store-basic") == tag  # a bare name is its latest version
    listed = {m.tag: m for m in store.list_models()}
    assert listed[tag].kind == "binary" and listed[tag].diagnostics_ok


def test_alias_history_and_rollback():
    first = store.save(make_posterior("binary", name="store-alias", seed=1))
    second = store.save(make_posterior("binary", name="store-alias", seed=2))
    store.set_alias("champion-t", first)
    store.set_alias("champion-t", second)
    assert store.resolve("champion-t") == second
    assert [h["tag"] for h in store.alias_history("champion-t")] == [first, second]
    assert store.rollback("champion-t") == first
    assert store.resolve("champion-t") == first
    with pytest.raises(ConfigError, match="no earlier target"):
        store.rollback("champion-t")
    with pytest.raises(ModelNotFound):
        store.rollback("never-set")


def test_alias_refuses_failing_diagnostics_unless_forced():
    bad = store.save(make_posterior("binary", name="store-bad", ok=False))
    with pytest.raises(DiagnosticsRefused) as info:
        store.set_alias("challenger-t", bad)
    assert "R-hat" in info.value.detail["failures"][0]
    assert store.set_alias("challenger-t", bad, force=True) == bad
    assert store.alias_history("challenger-t")[-1]["forced"] is True


def test_unknown_refs_and_bad_alias_names():
    with pytest.raises(ModelNotFound, match="no model, tag or alias"):
        store.resolve("does-not-exist")
    tag = store.save(make_posterior("binary", name="store-names"))
    with pytest.raises(ConfigError, match="invalid alias"):
        store.set_alias("Bad Alias", tag)


def test_corrupted_stored_file_is_refused():
    tag = store.save(make_posterior("binary", name="store-corrupt"))
    file = store.path(tag) / "posterior.nc"
    raw = bytearray(file.read_bytes())
    raw[-100] ^= 0xFF
    file.write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifact):
        store.get(tag)


def test_export_then_import_into_an_empty_store(tmp_path):
    posterior = make_posterior("regression", name="store-export")
    tag = store.save(posterior)
    exported = store.export(tag, f"file://{tmp_path}/model.bentomodel")
    assert Path(tmp_path / "model.bentomodel").is_file(), exported
    empty_home = tmp_path / "other-home"
    env = os.environ | {"BENTOML_HOME": str(empty_home)}
    cli = [sys.executable, "-m", "workbench.cli"]
    out = subprocess.run([*cli, "models", "import", f"file://{tmp_path}/model.bentomodel"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == tag
    shown = subprocess.run([*cli, "models", "show", tag, "--json"], env=env,
                           capture_output=True, text=True, check=True)
    assert '"model": "linear"' in shown.stdout
    rows = np.random.default_rng(0).normal(size=(3, 4)).tolist()
    pred = subprocess.run([*cli, "predict", tag, "--json"], input=str(rows), env=env,
                          capture_output=True, text=True, check=True)
    assert pred.stdout.count('"mean"') == 3
