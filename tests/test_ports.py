"""Loopback ports: a free one, and whether one is taken."""

from __future__ import annotations

import socket

from workbench.ports import LOWEST, ephemeral_range, free_port, port_free


def test_a_free_port_can_be_listened_on_and_is_then_taken():
    port = free_port()
    assert 0 < port < 65536 and port_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_free(port)


def test_a_free_port_is_never_one_an_outgoing_connection_could_take():
    span = ephemeral_range()
    ports = {free_port() for _ in range(50)}
    if span is not None:  # Linux: below the range the kernel hands to outgoing connections
        assert all(LOWEST <= p < span[0] for p in ports), (sorted(ports), span)
    assert len(ports) > 40  # spread, so two servers starting together rarely collide
