"""The command line, as a user runs it (real subprocesses, isolated model store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "workbench.cli"]


def run(*args: str, env: dict[str, str], input: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, input=input, capture_output=True,
                          text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return os.environ | {"BENTOML_HOME": str(tmp_path_factory.mktemp("cli-home"))}


@pytest.fixture(scope="module")
def trained(env) -> str:
    out = run("train", "logistic", "--dataset", "breast_cancer", "--alias", "champion",
              env=env)
    return out.stdout


@pytest.mark.slow
def test_train_prints_diagnostics_and_the_tag_last(trained, env):
    lines = trained.strip().splitlines()
    tag = lines[-1]
    assert tag.startswith("logistic-breast_cancer:")
    for word in ("R-hat", "ESS", "divergences", "accuracy"):
        assert word in trained
    listed = run("models", "list", env=env).stdout
    assert tag.split(":")[1][:8] in listed and "champion" in listed
    bento_listed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "bentoml"),
                                   "models", "list", "-o", "json"], env=env, check=True,
                                  capture_output=True, text=True).stdout
    assert tag in {m["tag"] for m in json.loads(bento_listed)}


@pytest.mark.slow
def test_predict_reads_rows_and_prints_json(trained, env):
    from sklearn.datasets import load_breast_cancer

    rows = load_breast_cancer().data[:3].tolist()
    out = run("predict", "champion", "--json", env=env, input=json.dumps({"instances": rows}))
    body = json.loads(out.stdout)
    assert body["model"] == trained.strip().splitlines()[-1]
    assert len(body["predictions"]) == 3
    first = body["predictions"][0]
    assert first["label"] in ("malignant", "benign")
    assert first["interval"][0] <= first["mean"] <= first["interval"][1]
    table = run("predict", "champion", env=env, input=json.dumps(rows)).stdout
    assert "90% interval" in table


def test_errors_are_one_clear_line(env):
    out = run("models", "show", "nope", env=env, check=False)
    assert out.returncode == 2
    assert out.stderr.startswith("error: no model, tag or alias 'nope'")
    out = run("train", "logistic", "--dataset", "mnist", env=env, check=False)
    assert out.returncode == 2 and "unknown dataset 'mnist'" in out.stderr


@pytest.mark.slow
def test_rollback_and_alias_from_the_cli(trained, env):
    first = trained.strip().splitlines()[-1]
    second = run("train", "logistic", "--dataset", "breast_cancer", "--seed", "1",
                 "--samples", "500", env=env).stdout.strip().splitlines()[-1]
    out = run("models", "alias", "champion", second, "--force", env=env)
    assert out.stdout.strip() == second
    assert run("models", "rollback", "champion", env=env).stdout.strip() == first
