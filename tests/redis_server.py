"""A real Redis for the tests: Debian's ``redis-server`` on a free loopback port."""

from __future__ import annotations

import time
from pathlib import Path

from servers import Server, free_port

from workbench.background import launch

REDIS = next((p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server")
              if Path(p).exists()), None)


def redis_server(*, log: Path, timeout: float = 30.0) -> tuple[Server, str]:
    """``redis-server`` in memory only (no RDB, no AOF), waiting until it answers PING;
    returns the server (stop it with ``.stop()``) and its ``redis://`` URL."""
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
