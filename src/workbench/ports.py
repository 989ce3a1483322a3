"""TCP ports on the loopback interface: a free one for a server to listen on, and whether
one is taken."""

from __future__ import annotations

import random
import socket
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def ephemeral_range() -> tuple[int, int] | None:
    """The kernel's range for the local ports of outgoing connections (Linux), else None."""
    try:
        low, high = map(int, RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def free_port() -> int:
    """A free TCP port on the loopback interface, below the kernel's ephemeral range where
    it is known: a server may take seconds to bind the port it was given, and meanwhile any
    outgoing connection (a database client, an HTTP call) could otherwise be handed the
    same port as its local end, and the server would fail with "address already in use"."""
    span = ephemeral_range()
    if span is not None and span[0] > LOWEST + 1000:
        for _ in range(200):
            port = random.randint(LOWEST, span[0] - 1)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """True when nothing listens on ``port`` of the loopback interface."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


__all__ = ["free_port", "port_free"]
