"""Shared fixtures. The model store is isolated in a temporary ``BENTOML_HOME`` for the
whole session (set before BentoML is imported)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="workbench-test-bentoml-")
os.environ["BENTOML_HOME"] = _HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
# Servers started by the tests are open unless a test turns auth on (tests/e2e/test_access.py).
os.environ.setdefault("WORKBENCH_AUTH", "off")
# Nothing a test writes (SQLite stores, event spools) lands in the user's ~/.workbench.
os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="workbench-test-home-"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import secrets_scan  # noqa: E402

secrets_scan.install()

from workbench.artifact import Posterior  # noqa: E402


def make_posterior(kind: str = "binary", *, n_features: int = 4, draws: int = 500,
                   chains: int = 2, seed: int = 0, name: str = "",
                   ok: bool = True) -> Posterior:
    """A posterior with known draws (no MCMC), for fast and exact tests."""
    rng = np.random.default_rng(seed)
    features = tuple(f"x{i}" for i in range(n_features))
    coef_mean = np.linspace(-1.0, 1.0, n_features)
    if kind == "binary":
        model, targets, options = "logistic", ("no", "yes"), {"prior_scale": 1.0}
        samples = {"intercept": rng.normal(0.3, 0.2, (chains, draws)),
                   "coef": rng.normal(coef_mean, 0.3, (chains, draws, n_features))}
    elif kind == "multiclass":
        model, targets, options = "softmax", ("a", "b", "c"), {"prior_scale": 1.0,
                                                              "n_classes": 3}
        samples = {"intercept": rng.normal(0.1, 0.2, (chains, draws, 2)),
                   "coef": rng.normal(0.0, 0.5, (chains, draws, n_features, 2))}
    else:
        model, targets, options = "linear", ("y",), {"prior_scale": 1.0, "robust": False}
        samples = {"intercept": rng.normal(0.0, 0.05, (chains, draws)),
                   "coef": rng.normal(coef_mean, 0.05, (chains, draws, n_features)),
                   "sigma": np.abs(rng.normal(0.5, 0.02, (chains, draws)))}
    samples = {k: v.astype(np.float32) for k, v in samples.items()}
    diagnostics = {"max_rhat": 1.001, "min_ess_bulk": 900.0, "min_ess_tail": 800.0,
                   "divergences": 0, "failures": [], "ok": True}
    if not ok:
        diagnostics |= {"max_rhat": 1.2, "failures": ["max R-hat 1.200 > 1.01"], "ok": False}
    return Posterior(
        model=model, kind=kind, options=options, feature_names=features,
        target_names=targets, samples=samples, x_loc=rng.normal(size=n_features),
        x_scale=rng.uniform(0.5, 2.0, n_features), y_loc=10.0 if kind == "regression" else 0.0,
        y_scale=3.0 if kind == "regression" else 1.0, name=name or f"test-{kind}",
        diagnostics=diagnostics, workbench_version="test")


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(_HOME)


@pytest.fixture(params=["binary", "multiclass", "regression"])
def any_posterior(request: pytest.FixtureRequest) -> Posterior:
    return make_posterior(request.param)


def require(condition: bool, what: str) -> None:
    """Skip with the package to install; in CI (CI=true) nothing may skip, so fail."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must run every test)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL server from Debian's packages, on a free loopback port."""
    from postgres import Postgres

    cluster = Postgres()
    yield cluster.url()
    cluster.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A real redis-server from Debian's packages on a free loopback port (no persistence);
    yields its URL."""
    from redis_server import REDIS, redis_server

    require(REDIS is not None, "redis-server is not installed: apt-get install redis-server "
                               "(make test does this when run as root)")
    server, url = redis_server(log=tmp_path_factory.mktemp("redis") / "redis.log")
    yield url
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> str:
    """moto's S3-compatible server on a free loopback port (the stand-in for a bucket);
    yields its URL. Point SDKs at it with ``AWS_ENDPOINT_URL_S3`` and any credentials."""
    import sys

    from workbench.background import launch
    from workbench.ports import free_port

    port = free_port()
    server = launch([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                     "-p", str(port)], port=port, ready_path="/moto-api/", ready_timeout=60,
                    log=tmp_path_factory.mktemp("s3") / "moto.log")
    yield server.url
    server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The log scan: no key, token or S3 secret the suite made appears in any server log
    or response body (tests/secrets_scan.py); a finding fails the run."""
    found = secrets_scan.FOUND + secrets_scan.scan_logs()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    line = (f"secrets scan: {len(secrets_scan.SECRETS)} secrets, "
            f"{len(set(secrets_scan.LOGS))} server logs: "
            + ("nothing leaked" if not found else f"{len(found)} LEAKS"))
    if reporter is not None:
        reporter.write_line(line)
        for item in found[:20]:
            reporter.write_line(f"  leaked: {item}")
    if found:
        session.exitstatus = 1

