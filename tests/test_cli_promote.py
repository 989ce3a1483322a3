"""``workbench promote`` as a user runs it (real subprocesses on the session's model store,
each test with its own aliases), and its rollout commands against ``deploy/k8s``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import make_posterior
from servers import ROOT

from workbench import store
from workbench.cli_promote import CONTAINER, DEPLOYMENT, IMAGE, NAMESPACE, next_steps

CLI = [sys.executable, "-m", "workbench.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=dict(os.environ), capture_output=True, text=True,
                          check=check, timeout=300)


@pytest.fixture(scope="module")
def tags() -> dict[str, str]:
    return {"old": store.save(make_posterior("binary", name="promote", seed=1)),
            "new": store.save(make_posterior("binary", name="promote", seed=2)),
            "failing": store.save(make_posterior("binary", name="promote", seed=3, ok=False))}


def test_promote_moves_the_alias_says_what_happens_next_and_prints_the_tag_last(tags):
    store.set_alias("promote-champion", tags["old"])
    out = run("promote", tags["new"], "--alias", "promote-champion")
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == tags["new"] and store.aliases()["promote-champion"] == tags["new"]
    assert lines[0] == f"promote-champion: {tags['old']} -> {tags['new']}"
    assert "follows within seconds" in out.stdout
    for command in ("workbench build predictor --model promote-champion",
                    'bentoml containerize "$TAG"',
                    'kubectl -n workbench set image deployment/predictor predictor="$IMAGE"',
                    "kubectl -n workbench rollout status deployment/predictor"):
        assert command in out.stdout

    again = run("promote", "promote-champion", "--alias", "promote-champion")
    assert again.stdout.startswith(f"promote-champion already points at {tags['new']}")
    assert again.stdout.strip().splitlines()[-1] == tags["new"]


def test_promote_by_alias_and_refusing_failing_diagnostics_unless_forced(tags):
    store.set_alias("promote-challenger", tags["new"])
    out = run("promote", "promote-challenger", "--alias", "promote-target")
    assert out.stdout.strip().splitlines()[-1] == tags["new"]
    assert store.aliases()["promote-target"] == tags["new"]

    refused = run("promote", tags["failing"], "--alias", "promote-target", check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("error: refusing to point 'promote-target'")
    assert store.aliases()["promote-target"] == tags["new"]
    forced = run("promote", tags["failing"], "--alias", "promote-target", "--force")
    assert forced.stdout.strip().splitlines()[-1] == tags["failing"]

    unknown = run("promote", "no-such-model", "--alias", "promote-target", check=False)
    assert unknown.returncode == 2 and "no model, tag or alias 'no-such-model'" in unknown.stderr


def test_the_rollout_commands_match_the_manifests():
    k8s = ROOT / "deploy" / "k8s"
    (deployment,) = [d for d in yaml.safe_load_all((k8s / "predictor.yaml").read_text())
                     if d and d["kind"] == "Deployment"]
    assert (deployment["metadata"]["namespace"], deployment["metadata"]["name"]) == (
        NAMESPACE, DEPLOYMENT)
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [
        CONTAINER]
    images = yaml.safe_load((k8s / "kustomization.yaml").read_text())["images"]
    assert {"name": "predictor", "newName": IMAGE} in [
        {k: i[k] for k in ("name", "newName")} for i in images]
    steps = "\n".join(next_steps("champion", "m:2", "m:1", image="reg.example/p"))
    assert "IMAGE=reg.example/p:${TAG#*:}" in steps
    assert (k8s / "predictor.yaml").read_text().count(
        f"kubectl -n {NAMESPACE} rollout status deployment/{DEPLOYMENT}") == 1
