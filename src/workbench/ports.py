"""TCP ports on the loopback interface: a free one for a server to listen on, and whether
one is taken."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """True when nothing listens on ``port`` of the loopback interface."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


__all__ = ["free_port", "port_free"]
