"""Real servers for the tests: started on a random free loopback port, stopped by pid."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from workbench.background import BENTOML, start
from workbench.background import BackgroundServer as Server
from workbench.ports import free_port

__all__ = ["BENTOML", "HAPROXY", "ROOT", "Server", "bentoml_serve", "free_port", "load_balancer",
           "replica_env", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]


def bentoml_serve(target: Sequence[str], *, env: dict[str, str], log: Path,
                  ready_timeout: float = 180, wait_ready: bool = True) -> Server:
    """``bentoml serve TARGET [ARGS...]`` on 127.0.0.1, waiting for ``/readyz``."""
    first, *args = target
    return start(first, args=args, env=env, log=log, wait=wait_ready,
                 ready_timeout=ready_timeout)



def replica_env(tmp: Path, i: int) -> dict[str, str]:
    """What replica ``i`` of a service on this machine needs of its own: BentoML's task
    result store (``$BENTOML_HOME/task_result.db`` by default), which every ``bentoml serve``
    deletes and recreates at start, so that replicas sharing one home race and the later
    start would wipe the earlier's batch jobs."""
    return {"BENTOML_RESULT_STORE": str(tmp / f"task-results-{i}.db")}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
             every: float = 0.05) -> float:
    """Poll ``condition`` until true (the tests' one way to wait); fail after ``timeout``
    seconds naming ``what``. Returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(every)
    return time.monotonic() - started


HAPROXY = next((p for p in ("/usr/sbin/haproxy", "/usr/bin/haproxy") if Path(p).exists()), None)


def load_balancer(backends: Sequence[str], *, log: Path) -> Server:
    """HAProxy (Debian's) on a free loopback port, round-robin over ``backends``
    (``http://127.0.0.1:PORT`` URLs); waits until it answers ``/readyz`` through them."""
    from workbench.background import launch

    port = free_port()
    servers = "\n".join(f"  server r{i} {url.split('//', 1)[1]}"
                        for i, url in enumerate(backends))
    config = log.with_suffix(".cfg")
    config.write_text(f"""global
  maxconn 512
defaults
  mode http
  option http-server-close
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend gateway
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
{servers}
""")
    return launch([HAPROXY or "haproxy", "-db", "-f", str(config)], port=port, log=log,
                  ready_path="/readyz", ready_timeout=30)
