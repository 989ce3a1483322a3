"""The Kubernetes manifests in ``deploy/k8s``: every object valid against the Kubernetes
OpenAPI schemas (``kubernetes-validate``, strict: an unknown field fails), and consistent
with each other, with the images and with the code that reads their environment."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import kubernetes_validate
import pytest
import sqlalchemy as sa
import yaml
from conftest import make_posterior
from servers import BENTOML, ROOT, bentoml_serve

from workbench import artifact, events, keys, store

K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
IMAGE_UID = 1034  # BENTO_USER_UID in BentoML's generated Dockerfile (user bentoml)
CREDENTIAL = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|KEY_ID", re.IGNORECASE)


def _load() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's own file, not an object
            continue
        out.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


OBJECTS = _load()
IDS = [f"{p.relative_to(K8S)}:{o['kind']}/{o['metadata']['name']}" for p, o in OBJECTS]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for _, o in OBJECTS if o["kind"] == kind}


def containers(deployment: dict[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("containers", []) + (spec.get("initContainers", []) if init else [])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("obj", [o for _, o in OBJECTS], ids=IDS)
def test_objects_are_valid_kubernetes(obj, version):
    kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_misspelt_field():
    deployment = copy.deepcopy(of_kind("Deployment")["predictor"])
    containers(deployment)[0]["readinesProbe"] = containers(deployment)[0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_the_stack_is_there():
    kinds = {(o["kind"], o["metadata"]["name"]) for _, o in OBJECTS}
    assert {("Namespace", "workbench"), ("Deployment", "predictor"), ("Service", "predictor"),
            ("HorizontalPodAutoscaler", "predictor"), ("Deployment", "experiment"),
            ("Service", "experiment"), ("Deployment", "predictor-gpu"),
            ("Deployment", "predictor-model-load")} <= kinds
    namespace = next(iter(of_kind("Namespace")))
    assert all(o["metadata"].get("namespace") == namespace
               for _, o in OBJECTS if o["kind"] != "Namespace")


@pytest.mark.parametrize("name", sorted(of_kind("Deployment")))
def test_deployments_probe_limit_and_run_as_the_image_user(name):
    deployment = of_kind("Deployment")[name]
    spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == IMAGE_UID
    for container in containers(deployment):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 3000}  # BentoML's port in the image
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    for container in containers(deployment, init=True):
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][bound].keys()


def test_the_predictor_rolls_out_without_losing_a_ready_pod():
    """A promotion reaches a built Predictor by a new image (`workbench promote` prints the
    commands): surge one pod, stop none before its replacement is ready."""
    strategy = of_kind("Deployment")["predictor"]["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_services_and_the_autoscaler_point_at_deployments():
    deployments = of_kind("Deployment")
    for name, service in of_kind("Service").items():
        target = deployments[name]
        assert service["spec"]["selector"].items() <= (
            target["spec"]["template"]["metadata"]["labels"].items())
        ports = {p["name"] for c in containers(target) for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for hpa in of_kind("HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        target = deployments[ref["name"]]
        assert "cpu" in containers(target)[0]["resources"]["requests"]  # utilisation needs it
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_gpu_variant_requests_one_gpu_with_the_gpu_bento_image():
    (container,) = containers(of_kind("Deployment")["predictor-gpu"])
    assert container["image"] == "predictor-gpu"  # what `workbench build predictor --gpu` names
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    for name in ("predictor", "experiment"):  # the CPU ones ask for none
        for c in containers(of_kind("Deployment")[name]):
            assert "nvidia.com/gpu" not in c["resources"]["limits"]


def test_model_load_variant_imports_into_a_shared_bentoml_home():
    deployment = of_kind("Deployment")["predictor-model-load"]
    spec = deployment["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    (server,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert init["args"] == ["bentoml", "models", "import", "$(WORKBENCH_MODEL_URL)"]
    assert "command" not in init  # the image's entrypoint activates its environment
    assert env_of(init)["WORKBENCH_MODEL_URL"]["value"].startswith("s3://")
    assert init["image"] == server["image"] == "predictor-remote"  # `build predictor --remote`
    # the server serves the one model imported into the volume: no URL, no credentials
    assert {"WORKBENCH_MODEL_URL", "AWS_ACCESS_KEY_ID"}.isdisjoint(env_of(server))
    home = env_of(init)["BENTOML_HOME"]["value"]
    assert env_of(server)["BENTOML_HOME"]["value"] == home
    for container in (init, server):
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == home]
        assert "emptyDir" in volumes[mount["name"]]
    assert spec["securityContext"]["fsGroup"] == IMAGE_UID  # the volume is the user's
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "secretKeyRef" in env_of(init)[key]["valueFrom"]


@pytest.mark.e2e
@pytest.mark.slow
def test_model_load_init_container_command_imports_the_exported_model(s3_server, tmp_path,
                                                                      monkeypatch):
    """The initContainer's args and env, as the kubelet would expand them (Secret values
    supplied here), run with this environment's bentoml against an S3 server."""
    (init,) = of_kind("Deployment")["predictor-model-load"]["spec"]["template"]["spec"][
        "initContainers"]
    secret = {"access-key-id": "testing", "secret-access-key": "testing",
              "endpoint-url": s3_server}
    env = {name: e["value"] if "value" in e else secret[e["valueFrom"]["secretKeyRef"]["key"]]
           for name, e in env_of(init).items()}
    env["BENTOML_HOME"] = str(tmp_path / "emptydir")  # the pod's shared volume
    url = env["WORKBENCH_MODEL_URL"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(name, env[name])
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=urlparse(url).netloc)
    tag = store.save(make_posterior("binary", name="k8s-model-load"))
    store.export(tag, url)  # what `workbench models export TAG URL` puts there

    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in init["args"]]
    assert args[:1] == ["bentoml"]
    out = subprocess.run([BENTOML, *args[1:]], env=dict(os.environ) | env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = subprocess.run([BENTOML, "models", "get", tag], env=dict(os.environ) | env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    name, version = tag.split(":")
    assert (Path(env["BENTOML_HOME"]) / "models" / name / version / artifact.FILENAME).is_file()

    # The server container: the remote Predictor with the server's env (no URL, no
    # credentials) serves the one model in the shared store.
    (container,) = containers(of_kind("Deployment")["predictor-model-load"])
    server_env = {k: e["value"] for k, e in env_of(container).items() if "value" in e}
    assert server_env["WORKBENCH_AUTH"] == "on"  # access control on in production
    # Its database and pepper, as the Secrets would give them: here a local SQLite file.
    server_env |= {"BENTOML_HOME": env["BENTOML_HOME"], "WORKBENCH_KEY_PEPPER": "k8s-pepper",
                   "WORKBENCH_DB_URL": f"sqlite:///{tmp_path / 'events.db'}"}
    monkeypatch.setenv("WORKBENCH_KEY_PEPPER", "k8s-pepper")
    key = keys.create(events.engine(server_env["WORKBENCH_DB_URL"]), "k8s", ["predict"])
    run_env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and k not in ("WORKBENCH_MODEL_URL",
                                                          "WORKBENCH_MODELS")}
    server = bentoml_serve(["service:Predictor", "--working-dir",
                            str(ROOT / "bentos" / "predictor"), "--arg", "remote=true"],
                           env=run_env | server_env, log=tmp_path / "server.log")
    try:
        refused = httpx.post(server.url + "/predict", json={"instances": [[0.0] * 4]})
        assert refused.status_code == 401
        served = httpx.post(server.url + "/predict", json={"instances": [[0.0] * 4]},
                            headers={"Authorization": f"Bearer {key}"}).json()
        assert served["model"] == tag
    finally:
        server.stop()


def test_the_gateway_sends_events_to_postgresql(monkeypatch):
    (container,) = containers(of_kind("Deployment")["experiment"])
    env = env_of(container)
    url = env["WORKBENCH_DB_URL"]["value"]
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    assert events.default_url() == url  # the variable the event store really reads
    parsed = sa.engine.make_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert parsed.password is None  # libpq takes it from PGPASSWORD
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"


def test_credentials_only_come_from_secrets():
    assert not of_kind("Secret")  # no Secret objects (with values) in the repository
    for _, obj in OBJECTS:
        if obj["kind"] != "Deployment":
            continue
        for container in containers(obj, init=True):
            for name, entry in env_of(container).items():
                if CREDENTIAL.search(name):
                    assert "value" not in entry, f"{name} is literal in {container['name']}"
                    assert "secretKeyRef" in entry["valueFrom"]


def test_every_serving_container_has_access_control_on_with_a_secret_pepper():
    for name, deployment in of_kind("Deployment").items():
        for container in containers(deployment):
            env = env_of(container)
            assert env["WORKBENCH_AUTH"]["value"] == "on", name
            assert env["WORKBENCH_KEY_PEPPER"]["valueFrom"]["secretKeyRef"] == {
                "name": "workbench-auth", "key": "pepper"}, name
            assert "WORKBENCH_DB_URL" in env, f"{name}: keys live in the event store"


def test_kustomization_names_the_files_and_every_image():
    text = (K8S / "kustomization.yaml").read_text()
    kustomization = yaml.safe_load(text)
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file()
    listed = set(kustomization["resources"]) | set(re.findall(r"#\s*-\s*(\S+\.yaml)", text))
    assert listed == {str(p.relative_to(K8S)) for p, _ in OBJECTS}  # nothing left out
    images = {c["image"] for _, o in OBJECTS if o["kind"] == "Deployment"
              for c in containers(o, init=True)}
    assert images == {i["name"] for i in kustomization["images"]}
