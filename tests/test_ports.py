"""Loopback ports: a free one, and whether one is taken."""

from __future__ import annotations

import socket

from workbench.ports import free_port, port_free


def test_a_free_port_can_be_listened_on_and_is_then_taken():
    port = free_port()
    assert 0 < port < 65536 and port_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_free(port)
