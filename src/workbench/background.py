"""Local servers in the background: for notebooks, the demo, the tests and the benchmarks.

:func:`start` runs ``bentoml serve TARGET`` on a free loopback port (:func:`launch` any
other server command, :func:`redis_server` Debian's ``redis-server``) in its own process
group, logs to a file, waits until it is ready and returns a :class:`BackgroundServer`;
:meth:`BackgroundServer.stop` (also on leaving a ``with`` block, and at interpreter exit)
signals the whole group, so no worker outlives the notebook that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.ports import free_port
from workbench.settings import load

BENTOML = str(Path(sys.executable).parent / "bentoml")
REDIS = shutil.which("redis-server") or next(
    (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None)


@dataclass
class BackgroundServer:
    """A running ``bentoml serve``: its process, base URL and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    api_key: str | None = None  # what clients of this server authenticate with

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer KEY`` when the server was given a key, else nothing."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """Everything the server has logged so far."""
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 180.0, path: str = "/readyz") -> None:
        """Poll ``path`` until it answers 200; raise with the log's tail if the server
        exits or the time runs out."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"bentoml serve exited with status "
                                   f"{self.process.returncode}; log {self.log}:\n"
                                   + self.output()[-4000:])
            try:  # a page rendered on request (a dashboard) may take a while: no pile-up
                wait = min(30.0, max(2.0, deadline - time.monotonic()))
                if httpx.get(self.url + path, timeout=wait).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"bentoml serve was not ready in {timeout:.0f}s; log {self.log}:\n"
                           + self.output()[-4000:])

    def client(self, timeout: float = 60.0) -> Any:
        """A ``bentoml.SyncHTTPClient`` for this server."""
        import bentoml

        return bentoml.SyncHTTPClient(self.url, timeout=timeout, token=self.api_key)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the server's process group, wait, and return its exit status. When it
        must be killed, its descendants are killed by pid too: BentoML starts its workers
        in sessions of their own, outside the group, and they would outlive it."""
        if self.running():
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the server and every process it started (a crash, for tests)."""
        import psutil

        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.wait(10)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.process.returncode}"
        return f"<BackgroundServer {self.url} pid={self.pid} {state}>"


def launch(command: Sequence[str], *, port: int, log: str | Path,
           env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
           ready_path: str | None = "/readyz", ready_timeout: float = 180.0
           ) -> BackgroundServer:
    """Start any local server ``command`` (listening on 127.0.0.1:``port``) in its own
    process group, logging to ``log``; wait until ``ready_path`` answers 200 unless it is
    None. Stopped by :meth:`BackgroundServer.stop`, at the latest at interpreter exit."""
    log = Path(log)
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT,
                                   env=dict(env) if env is not None else None, cwd=cwd,
                                   start_new_session=True)
    server = BackgroundServer(process, f"http://127.0.0.1:{port}", log)
    atexit.register(server.stop)
    if ready_path is not None:
        server.wait_ready(ready_timeout, path=ready_path)
    return server


def redis_server(*, log: str | Path, timeout: float = 30.0) -> tuple[BackgroundServer, str]:
    """``redis-server`` (:data:`REDIS`) on a free loopback port, in memory only (no RDB, no
    AOF), once it answers PING; the server (stop it with ``.stop()``) and its ``redis://``
    URL. Raises RuntimeError with the end of its log if it does not answer in ``timeout``."""
    import redis

    port = free_port()
    server = launch([REDIS or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no"], port=port, log=log, ready_path=None)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.ping():
                    return server, f"redis://127.0.0.1:{port}/0"
            except redis.ConnectionError:
                pass
            if not server.running() or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"redis-server did not answer PING; log {log}:\n"
                                   + server.output()[-2000:])
            time.sleep(0.05)
    finally:
        client.close()


def start(target: str, *, working_dir: str | Path | None = None, args: Sequence[str] = (),
          env: Mapping[str, str] | None = None, port: int | None = None,
          log: str | Path | None = None, wait: bool = True,
          ready_timeout: float = 180.0, api_key: str | None = None) -> BackgroundServer:
    """Start ``bentoml serve TARGET`` on 127.0.0.1 and (by default) wait until ready.

    Parameters
    ----------
    target
        A bento tag (``predictor:abc123``) or, with ``working_dir``, ``module:Service``.
    args
        Extra ``bentoml serve`` arguments, e.g. ``["--arg", "models=champion"]``.
    env
        The server's environment (default: this process's).
    port
        Default: a free port.
    log
        Where its output goes (default: a file in the temp directory, named by port).
    api_key
        The key its clients use (:attr:`BackgroundServer.headers`, :meth:`~BackgroundServer.
        client`), default ``$WORKBENCH_API_KEY``.
    """
    port = port or free_port()
    command = [BENTOML, "serve", target, "--host", "127.0.0.1", "--port", str(port), *args]
    if working_dir is not None:
        command += ["--working-dir", str(Path(working_dir).resolve())]
    server = launch(command, port=port, env=env,
                    log=log or Path(tempfile.gettempdir()) / f"workbench-serve-{port}.log",
                    ready_path="/readyz" if wait else None, ready_timeout=ready_timeout)
    saved = load().api_key
    server.api_key = api_key or (saved.get_secret_value() if saved else None)
    return server


def own_home(parent: Path, name: str) -> Path:
    """A ``BENTOML_HOME`` for one server, under ``parent``, sharing this process's model
    store and aliases (linked).

    ``bentoml serve`` empties ``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so
    of two servers under one home the first keeps writing its metrics to files the second
    deleted, and its ``/metrics`` stops counting them; each with a home of its own does not.
    """
    from workbench import store

    shared = store.home()
    home = Path(parent) / "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    home.mkdir(parents=True, exist_ok=True)
    for entry in ("models", "workbench"):
        (shared / entry).mkdir(parents=True, exist_ok=True)
        if not (home / entry).exists():
            (home / entry).symlink_to((shared / entry).resolve())
    return home
