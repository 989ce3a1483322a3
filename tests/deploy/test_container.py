"""The Predictor bento as an OCI image, for real: ``bentoml containerize --backend buildah``
builds the bento's generated Dockerfile, unchanged, on a local stand-in for its base image
(``deploy/base-image.sh``); the image, run with its own entrypoint, answers ``/readyz`` and
``/predict`` exactly as ``bentoml serve`` of the same bento does on the host.

Container storage (vfs) lives in ``deploy/.containers`` (gitignored), so the base image is
built once and reused by later runs; the bento's image and container are removed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_posterior, require
from servers import BENTOML, ROOT, bentoml_serve

from workbench import events, keys, store
from workbench.background import launch
from workbench.ports import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow]

DEPLOY = ROOT / "deploy"
STORAGE = DEPLOY / ".containers"
IMAGE = "localhost/workbench-test-predictor"
CONTAINER = "workbench-test-predictor"


def progress(config: pytest.Config, message: str) -> None:
    """A line on the terminal even while output is captured: these phases take minutes."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"[container] {message}")
        reporter.flush()


def run(args: list[str], env: dict[str, str], log: Path, what: str,
        timeout: float = 900) -> str:
    """Run a command, its output appended to ``log``; fail with the log's tail."""
    with open(log, "ab") as handle:
        code = subprocess.run(args, env=env, stdout=handle, stderr=subprocess.STDOUT,
                              timeout=timeout).returncode
    if code != 0:
        pytest.fail(f"{what} failed ({code}):\n" + log.read_text(errors="replace")[-4000:])
    return log.read_text(errors="replace")


def buildah(env: dict[str, str], *args: str, check: bool = True) -> str:
    out = subprocess.run(["buildah", *args], env=env, capture_output=True, text=True,
                         timeout=300)
    if check and out.returncode != 0:
        pytest.fail(f"buildah {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def stop_tree(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM a process and all its descendants, then SIGKILL what is left. BentoML
    starts its workers in sessions of their own, so a process-group signal misses them."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    process.wait(10)


@pytest.fixture(scope="session")
def container_env() -> dict[str, str]:
    """buildah and podman on storage of our own (vfs: no overlay mounts needed)."""
    for tool, package in (("buildah", "buildah"), ("podman", "podman"),
                          ("debootstrap", "debootstrap")):
        require(shutil.which(tool) is not None,
                f"{tool} is not installed: apt-get install {package} "
                "(make test does this when run as root)")
    require(os.geteuid() == 0, "building the base image with debootstrap needs root")
    STORAGE.mkdir(parents=True, exist_ok=True)
    conf = STORAGE / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{STORAGE / "storage"}"\n'
                    f'runroot = "{STORAGE / "run"}"\n')
    return dict(os.environ) | {"CONTAINERS_STORAGE_CONF": str(conf), "STORAGE_DRIVER": "vfs",
                               "BUILDAH_ISOLATION": "chroot"}


@pytest.fixture(scope="session")
def timings(request) -> Iterator[dict[str, float]]:
    phases: dict[str, float] = {}
    yield phases
    progress(request.config, ", ".join(f"{k} {v:.0f}s" for k, v in phases.items()))


def base_image_of(bento: str) -> str:
    """The image the bento's generated Dockerfile starts FROM, as a full reference."""
    name, version = bento.split(":")
    dockerfile = store.home() / "bentos" / name / version / "env" / "docker" / "Dockerfile"
    (ref,) = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), flags=re.M)
    first = ref.split("/")[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref  # already names its registry
    return f"docker.io/{ref if '/' in ref else 'library/' + ref}"


@pytest.fixture(scope="session")
def base_image(bento, container_env, timings, request, tmp_path_factory) -> str:
    """A stand-in for the bento's base image, under its name: built once (minutes:
    debootstrap), then reused."""
    image = base_image_of(bento)
    assert image == "docker.io/library/python:3.11-slim"  # what deploy/base-image.sh stands for
    log = tmp_path_factory.mktemp("container") / "base-image.log"
    progress(request.config, f"base image {image} (deploy/base-image.sh; log {log})")
    started = time.monotonic()
    out = run([str(DEPLOY / "base-image.sh"), image], container_env, log,
              "deploy/base-image.sh", timeout=1200)
    timings["base image"] = time.monotonic() - started
    progress(request.config, f"{out.strip().splitlines()[-1]} "
                             f"in {timings['base image']:.0f}s")
    return image


@pytest.fixture(scope="session")
def bento() -> str:
    """A Predictor bento serving a classifier (default) and a regression, built by the CLI
    as a user builds it."""
    store.save(make_posterior("binary", name="container-logistic"), alias="ctr-champion")
    store.save(make_posterior("regression", name="container-linear"), alias="ctr-reg")
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "build", "predictor",
                          "--model", "ctr-champion", "--model", "ctr-reg"],
                         capture_output=True, text=True, check=True, timeout=600)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def image(bento, base_image, container_env, timings, request,
          tmp_path_factory) -> Iterator[str]:
    """``bentoml containerize`` of the bento with the buildah backend; removed afterwards."""
    name = f"{IMAGE}:{bento.split(':')[1]}"
    _remove_leftovers(container_env)
    log = tmp_path_factory.mktemp("container") / "containerize.log"
    progress(request.config, f"bentoml containerize {bento} --backend buildah (log {log})")
    started = time.monotonic()
    try:
        run([BENTOML, "containerize", bento, "--backend", "buildah", "-t", name],
            container_env, log, "bentoml containerize", timeout=1200)
        timings["containerize"] = time.monotonic() - started
        progress(request.config, f"built {name} in {timings['containerize']:.0f}s")
        yield name
    finally:
        buildah(container_env, "rmi", "--force", name, check=False)


def _remove_leftovers(env: dict[str, str]) -> None:
    """What an interrupted run left behind: our container and images, by name."""
    buildah(env, "rm", CONTAINER, check=False)
    for line in buildah(env, "images", "--format", "{{.Name}}:{{.Tag}}").split():
        if line.startswith(IMAGE + ":"):
            buildah(env, "rmi", "--force", line, check=False)


def test_image_serves_the_same_answers_as_bentoml_serve(bento, image, container_env, timings,
                                                        request, tmp_path):
    config = json.loads(buildah(container_env, "inspect", "--type", "image", image)
                        )["OCIv1"]["config"]
    entrypoint = config["Entrypoint"]
    assert entrypoint == ["/home/bentoml/bento/env/docker/entrypoint.sh"]
    assert config["User"] == "bentoml"  # the image does not run as root

    host = bentoml_serve([bento], env=dict(os.environ), log=tmp_path / "host.log",
                         wait_ready=False)  # starts while the container is created
    process = None
    try:
        started = time.monotonic()
        buildah(container_env, "from", "--name", CONTAINER, image)
        timings["buildah from"] = time.monotonic() - started
        port = free_port()
        log = tmp_path / "container.log"
        # Auth is on in the image by default: its keys live in an event store that the
        # container reaches through a volume; the key is made on the host, same pepper.
        keydir = tmp_path / "keys"
        keydir.mkdir(mode=0o777)
        keydir.chmod(0o777)  # the image's user (bentoml) writes SQLite's WAL files there
        pepper = "container-test-pepper"
        os.environ["WORKBENCH_KEY_PEPPER"] = pepper
        try:
            key = keys.create(events.engine(f"sqlite:///{keydir / 'events.db'}"), "ctr",
                              ["predict"])
        finally:
            del os.environ["WORKBENCH_KEY_PEPPER"]
        (keydir / "events.db").chmod(0o666)
        started = time.monotonic()
        served = launch(  # the image's entrypoint, as its user, on loopback
            ["buildah", "run", "--isolation", "chroot", "--volume", f"{keydir}:/keys",
             "--env", "WORKBENCH_DB_URL=sqlite:////keys/events.db",
             "--env", f"WORKBENCH_KEY_PEPPER={pepper}", CONTAINER, "--", *entrypoint,
             "--host", "127.0.0.1", "--port", str(port)],
            port=port, env=container_env, log=log, ready_path=None)
        process = served.process
        served.wait_ready(300)
        timings["container to ready"] = time.monotonic() - started
        progress(request.config, f"{image} ready on {served.url} in "
                                 f"{timings['container to ready']:.0f}s")
        host.wait_ready()
        for path in ("/readyz", "/livez"):
            assert httpx.get(served.url + path).status_code == 200
        refused = httpx.post(served.url + "/predict", json={"instances": [[0.0] * 4]})
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
        auth = {"Authorization": f"Bearer {key}"}
        payloads = [{"instances": [[0.1, -0.2, 0.3, 1.5], [2.0, 0.0, -1.0, 0.5]], "draws": 3},
                    {"instances": [{"x0": 0.5, "x1": 0.1, "x2": -0.3, "x3": 2.0}],
                     "model": "ctr-reg", "interval_mass": 0.8}]
        for payload in payloads:
            ours = httpx.post(served.url + "/predict", json=payload, timeout=30, headers=auth)
            theirs = httpx.post(host.url + "/predict", json=payload, timeout=30)
            assert ours.status_code == theirs.status_code == 200
            assert ours.json() == theirs.json()
        bad = {"instances": [[1.0, 2.0]]}
        ours = httpx.post(served.url + "/predict", json=bad, headers=auth)
        assert ours.status_code == 400
        assert ours.json() == httpx.post(host.url + "/predict", json=bad).json()
        meta = httpx.get(served.url + "/metadata", headers=auth).json()
        assert meta["build"]["bento"] == bento
        progress(request.config, f"same answers; the image runs Python "
                                 f"{meta['build']['python']}, the host "
                                 f"{httpx.get(host.url + '/metadata').json()['build']['python']}")
    finally:
        if process is not None:
            stop_tree(process)
        host.stop()
        buildah(container_env, "rm", CONTAINER, check=False)
