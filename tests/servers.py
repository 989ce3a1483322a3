"""Real servers for the tests: started on a random free loopback port, stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from workbench.serving import free_port

ROOT = Path(__file__).resolve().parents[1]
BENTOML = str(Path(sys.executable).parent / "bentoml")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server's process group and wait; returns its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def bentoml_serve(target: Sequence[str], *, env: dict[str, str], log: Path,
                  ready_timeout: float = 180, wait_ready: bool = True,
                  cwd: Path | None = None) -> Server:
    """``bentoml serve TARGET --port P`` on 127.0.0.1, waiting for ``/readyz``."""
    port = free_port()
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [BENTOML, "serve", *target, "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=cwd or ROOT, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    if wait_ready:
        wait_until_ready(server, ready_timeout)
    return server


def wait_until_ready(server: Server, timeout: float = 180, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited ({server.process.returncode}):\n"
                               + server.output()[-4000:])
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise TimeoutError(f"server not ready after {timeout}s:\n" + server.output()[-4000:])
