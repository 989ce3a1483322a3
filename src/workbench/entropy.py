"""Random hex for request ids, drawn from the operating system a block at a time.

``secrets.token_hex`` and ``uuid.uuid4`` make one ``getrandom`` system call per id, and a
system call releases the GIL: under load the event loop's thread then waits for the GIL
behind the event writer's and the micro-batcher's threads (up to a switch interval, 5 ms)
two or three times per request. Here the same kernel randomness comes 4 KiB per call, so a
request's ids cost no system call at all. A forked child starts with a fresh block (a copy
of the parent's would repeat its ids) and a lock of its own.
"""

from __future__ import annotations

import os
import threading

BLOCK = 4096

_lock = threading.Lock()
_block = b""
_used = 0


def token_hex(nbytes: int) -> str:
    """``nbytes`` random bytes from the OS, as ``2 * nbytes`` hex digits."""
    global _block, _used
    with _lock:
        if _used + nbytes > len(_block):
            _block, _used = os.urandom(max(BLOCK, nbytes)), 0
        chunk = _block[_used:_used + nbytes]
        _used += nbytes
    return chunk.hex()


def _forget() -> None:
    """In a forked child: a new block, and a new lock (a thread that held the old one at
    the fork does not exist here to release it)."""
    global _block, _used, _lock
    _block, _used, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget)
