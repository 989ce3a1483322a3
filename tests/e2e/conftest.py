"""A real Predictor (``bentoml serve`` of bentos/predictor) over two stored posteriors:
a logistic regression fitted on breast_cancer (aliased champion) and a regression."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import pytest
from conftest import make_posterior
from servers import ROOT, Server, bentoml_serve

from workbench import datasets, store
from workbench.background import own_home
from workbench.fit import DiagnosticsWarning, SamplerConfig, fit


@pytest.fixture(scope="session")
def champion() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        posterior = fit("logistic", datasets.load("breast_cancer"), name="e2e-logistic",
                        progress=False,
                        config=SamplerConfig(warmup=300, samples=300, chains=2, seed=0))
    return store.save(posterior, alias="champion", force=True)


@pytest.fixture(scope="session")
def regression() -> str:
    return store.save(make_posterior("regression", name="e2e-regression"), alias="reg")


@pytest.fixture(scope="session")
def server_env() -> dict[str, str]:
    return dict(os.environ)


@pytest.fixture(scope="session")
def predictor(champion, regression, server_env, tmp_path_factory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "predictor.log"
    server = bentoml_serve(["service:Predictor", "--working-dir",
                            str(ROOT / "bentos" / "predictor"), "--arg", "models=champion,reg"],
                           # a home of its own: a later `bentoml serve` under the shared home
                           # empties its prometheus directory and /metrics stops counting
                           env=server_env | {"BENTOML_HOME": str(own_home(
                               tmp_path_factory.mktemp("homes"), "predictor"))}, log=log)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def challenger() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)
        posterior = fit("logistic", datasets.load("breast_cancer"), name="e2e-logistic",
                        options={"prior_scale": 0.3}, progress=False,
                        config=SamplerConfig(warmup=200, samples=200, chains=2, seed=1))
    return store.save(posterior, alias="challenger", force=True)


def serve_experiment(config: str, tmp_path, *, env: dict[str, str] | None = None) -> tuple[
        Server, str]:
    """``bentoml serve`` of bentos/experiment with ``config`` (YAML text), its own SQLite
    event store and its own ``BENTOML_HOME`` (the model store linked): each start deletes
    the home's task-result database (``/batch``) and Prometheus files, which a server still
    running under the same home would lose. Returns the server and the store's URL."""
    path = tmp_path / "experiment.yaml"
    path.write_text(config)
    db = f"sqlite:///{tmp_path / 'events.db'}"
    server_env = dict(os.environ) | {"WORKBENCH_EXPERIMENT": str(path), "WORKBENCH_DB_URL": db,
                                     "BENTOML_HOME": str(own_home(tmp_path, "home"))
                                     } | (env or {})
    server_env.pop("WORKBENCH_MODELS", None) if not env or "WORKBENCH_MODELS" not in env \
        else None
    server = bentoml_serve(["service:Experiment", "--working-dir",
                            str(ROOT / "bentos" / "experiment")],
                           env=server_env, log=tmp_path / "experiment.log")
    return server, db


@pytest.fixture(scope="session")
def secured(tmp_path_factory):
    """Access control for servers started with ``env`` (``WORKBENCH_AUTH=on``): keys (one
    per scope, one with every scope as ``all``, and one to revoke as ``doomed``) in an event
    store of its own, a throwaway identity provider's JWKS, and two regression models."""
    from jwks import Provider

    from workbench import events, keys

    tmp = tmp_path_factory.mktemp("secured")
    tags = {arm: store.save(make_posterior("regression", name=f"access-{arm}", seed=seed),
                            alias=f"access-{arm}", force=True)
            for arm, seed in (("a", 11), ("b", 12))}
    idp = Provider(tmp)
    db = f"sqlite:///{tmp / 'events.db'}"
    env = {"WORKBENCH_AUTH": "on", "WORKBENCH_DB_URL": db, "WORKBENCH_KEY_PEPPER": "e2e-pepper",
           "WORKBENCH_KEY_CACHE_SECONDS": "1"} | idp.env()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_KEY_PEPPER", "e2e-pepper")
        eng = events.engine(db)
        made = {s: keys.create(eng, f"e2e-{s}", [s]) for s in keys.SCOPES}
        made["all"] = keys.create(eng, "e2e-all", keys.SCOPES)
        made["doomed"] = keys.create(eng, "e2e-doomed", ["predict", "feedback"])
    return {"keys": made, "idp": idp, "eng": eng, "tags": tags, "env": env, "tmp": tmp}


def serve_secured_predictor(secured, log, home=None) -> Server:
    """A Predictor of ``access-a`` with access control on (the ``secured`` keys).

    Each module that reads a server's ``/metrics`` starts its own servers: every
    ``bentoml serve`` start empties the Prometheus directory under ``BENTOML_HOME``, so a
    server started earlier in the session loses its metrics to a later start."""
    return bentoml_serve(["service:Predictor", "--working-dir",
                          str(ROOT / "bentos" / "predictor"), "--arg", "models=access-a"],
                         env=dict(os.environ) | secured["env"]
                         | ({"BENTOML_HOME": str(home)} if home else {}), log=log,
                         wait_ready=False)

