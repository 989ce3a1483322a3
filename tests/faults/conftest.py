"""Fault injection against real servers: a ``bentoml serve`` of the experiment bento (the
gateway and its Predictor worker) over two small known-draw models, private PostgreSQL
clusters that a test may stop, and a load of concurrent clients.

Each test reports its figures three ways: as ``record_property`` (JUnit XML), on its
captured standard output (``-rA``) and in a "fault injection" section of the terminal
summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import make_posterior
from postgres import Postgres
from servers import ROOT, Server, bentoml_serve

from workbench import store

EXPERIMENT = "faults"
CONFIG = f"""
name: {EXPERIMENT}
arms:
  - {{name: control, model: faults-control, weight: 0.5}}
  - {{name: treatment, model: faults-treatment, weight: 0.5}}
metric: binary
"""
FEATURES = 4
CLIENTS = 32
CLIENT_TIMEOUT = 30.0  # longer than the gateway's ack timeout (10 s) and queue wait (2 s)
_FIGURES: list[str] = []


def row(i: int) -> list[float]:
    return [((i * (k + 3)) % 17) / 8.0 - 1.0 for k in range(FEATURES)]


@pytest.fixture(scope="session")
def arm_models() -> dict[str, str]:
    """The two arms' models: known draws (no MCMC), stored under aliases of their own."""
    return {alias: store.save(make_posterior("binary", n_features=FEATURES, seed=seed,
                                             name=f"{alias}-model"), alias=alias, force=True)
            for alias, seed in (("faults-control", 21), ("faults-treatment", 22))}


def serve_gateway(tmp: Path, env: dict[str, str], *, log: str = "gateway.log") -> Server:
    """``bentoml serve`` of bentos/experiment running the ``faults`` experiment (its arms in
    process unless ``env`` sets ``WORKBENCH_ARMS=predictor``), with ``env`` over this
    process's environment."""
    config = tmp / "experiment.yaml"
    config.write_text(CONFIG)
    full = {k: v for k, v in os.environ.items() if k != "WORKBENCH_MODELS"}
    full |= {"WORKBENCH_EXPERIMENT": str(config), "WORKBENCH_EVENT_RETRY_SECONDS": "0.5"}
    return bentoml_serve(["service:Experiment", "--working-dir",
                          str(ROOT / "bentos" / "experiment")], env=full | env,
                         log=tmp / log)


def stop(server: Server) -> None:
    """Stop ``server`` and every process under it. BentoML's workers run in sessions of
    their own, outside the server's process group, so the group's SIGKILL that
    :meth:`Server.stop` falls back to would leave them serving; they are killed by pid."""
    try:
        under = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        under = []
    server.stop()
    for proc in under:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()  # psutil checks it is still the same process (no pid reuse)
    psutil.wait_procs(under, timeout=10)


def health(url: str) -> dict[str, Any]:
    """``GET /health/all`` (200 or 503, JSON either way)."""
    return httpx.get(url + "/health/all", timeout=10).json()


def settled(url: str) -> bool:
    """The event pipeline has caught up: the store is up, nothing queued or spooled."""
    try:
        h = health(url)
    except httpx.HTTPError:
        return False
    return bool(h["event_store"]["up"] and h["writer"]["queue"] == 0
                and h["spool"]["segments"] == 0 and h["spool"]["bytes"] == 0)


def worker(server_pid: int, service: str) -> psutil.Process:
    """The worker process of ``service`` (``experiment``, ``predictor``) among the
    descendants of the ``bentoml serve`` at ``server_pid`` only."""
    found = []
    for proc in psutil.Process(server_pid).children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--service-name" in cmd and cmd[cmd.index("--service-name") + 1] == service:
            found.append(proc)
    assert len(found) == 1, f"{len(found)} {service} workers under pid {server_pid}"
    return found[0]


# -- PostgreSQL clusters a test may stop ------------------------------------------------------

@pytest.fixture(scope="module")
def private_postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of the module's own: stopping it breaks no other test."""
    cluster = Postgres()
    yield cluster
    cluster.close()


# -- load ---------------------------------------------------------------------------------------

@dataclass
class Answer:
    """One request of the load and how it ended."""

    kind: str  # "predict" or "feedback"
    phase: str  # the load's phase when the request was sent
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer (see error)
    error: str | None = None  # the transport error's class (a timeout, a refused connection)
    body: Any = None
    request_id: str | None = None
    outcome: int | None = None  # feedback: the outcome sent

    @property
    def json_error(self) -> bool:
        """An error answered with the JSON body of the contract."""
        return isinstance(self.body, dict) and isinstance(self.body.get("error"), str)


class Load:
    """``clients`` concurrent clients (asyncio + httpx in a background thread) that send
    ``/predict`` and, for each 200, a ``/feedback``, until :meth:`stop`.

    Outcomes arrive late, as they do: a client posts the feedback of its prediction from
    ``lag`` rounds earlier, so that feedback for a request logged before a fault is sent
    during it (and the feedback still due when the load stops, on stopping).

    ``phase`` labels the requests sent from now on; :meth:`count` and :attr:`answers`
    are safe to read while the load runs.
    """

    def __init__(self, url: str, *, clients: int = CLIENTS, feedback: bool = True,
                 lag: int = 2, prefix: str = "unit", timeout: float = CLIENT_TIMEOUT) -> None:
        self.url, self.clients, self.feedback, self.lag = url, clients, feedback, lag
        self.prefix, self.timeout = prefix, timeout
        self.phase = "before"
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()),
                                        name="fault-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 30)
        assert not self._thread.is_alive(), "the load's clients did not stop"

    def count(self, kind: str = "predict", *, status: int | None | str = "any",
              phase: str | None = None, after: float | None = None) -> int:
        return sum(1 for a in list(self.answers) if a.kind == kind
                   and (status == "any" or a.status == status)
                   and (phase is None or a.phase == phase)
                   and (after is None or a.started >= after))

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients * 2,
                              max_keepalive_connections=self.clients * 2)
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout,
                                     limits=limits) as client:
            await asyncio.gather(*(self._client(client, c) for c in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, c: int) -> None:
        i = 0
        due: list[tuple[str, int]] = []  # (request id, outcome) awaiting their feedback
        while not self._stop.is_set():
            i += 1
            unit = f"{self.prefix}-{c}-{i}"
            answer = await self._send(client, "predict", {"unit": unit,
                                                         "instances": [row(c * 7919 + i)]})
            if answer.status == 200:
                answer.request_id = answer.body["request_id"]
                due.append((answer.request_id, i % 2))
            if self.feedback and len(due) > self.lag:
                await self._feedback(client, *due.pop(0))
        for request_id, outcome in due if self.feedback else ():
            await self._feedback(client, request_id, outcome)

    async def _feedback(self, client: httpx.AsyncClient, request_id: str, outcome: int
                        ) -> None:
        sent = await self._send(client, "feedback", {"request_id": request_id,
                                                     "outcome": outcome})
        sent.request_id, sent.outcome = request_id, outcome

    async def _send(self, client: httpx.AsyncClient, kind: str, body: dict[str, Any]
                    ) -> Answer:
        answer = Answer(kind, self.phase, time.monotonic(), 0.0, None)
        try:
            r = await client.post(f"/{kind}", json=body)
            answer.status = r.status_code
            try:
                answer.body = r.json()
            except ValueError:
                answer.body = r.text[:500]
        except httpx.HTTPError as exc:
            answer.error = type(exc).__name__
        answer.ended = time.monotonic()
        self.answers.append(answer)
        return answer


def statuses(answers: list[Answer], kind: str) -> dict[str, int]:
    """How many requests of ``kind`` ended how ("200", "503", "ConnectError", ...)."""
    out: dict[str, int] = {}
    for a in answers:
        if a.kind == kind:
            key = str(a.status) if a.status is not None else str(a.error)
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def in_contract(answer: Answer) -> bool:
    """A 200, or a 503 with the JSON error body of the contract."""
    return answer.status == 200 or (answer.status == 503 and answer.json_error)


def assert_contract(answers: list[Answer]) -> None:
    """Every answer is :func:`in_contract`: no 500 or other status, no timeout, no dropped
    connection; else fail naming how many of each and the first bodies."""
    bad = [a for a in answers if not in_contract(a)]
    kinds = Counter(f"{a.kind} {a.status if a.status is not None else a.error}" for a in bad)
    assert not bad, (f"{len(bad)} of {len(answers)} answers outside the contract (200, or 503 "
                     f"with a JSON error body): {dict(kinds)}; first: "
                     + "; ".join(f"{a.kind} in phase {a.phase}: {str(a.body)[:160]}"
                                 for a in bad[:3]))


# -- figures ------------------------------------------------------------------------------------

@pytest.fixture
def report(request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]
           ) -> Callable[..., None]:
    """``report(name=value, ...)``: a test's measured figures (JUnit properties, its
    standard output, and the terminal summary's "fault injection" section)."""
    def write(**figures: Any) -> None:
        for name, value in figures.items():
            record_property(name, value)
        line = f"{request.node.name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
        print(line)
        _FIGURES.append(line)
    return write


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("fault injection")
        for line in _FIGURES:
            terminalreporter.write_line(line)
