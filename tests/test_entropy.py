"""Random hex from blocks of OS randomness: well-formed, never repeated, not shared with a
forked child."""

from __future__ import annotations

import os
import re
import signal

from workbench import entropy, feedback, trace


def test_ids_are_hex_of_the_asked_length_and_do_not_repeat_across_blocks():
    ids = [entropy.token_hex(10) for _ in range(3 * entropy.BLOCK // 10)]  # 3 blocks' worth
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len(entropy.token_hex(entropy.BLOCK + 1)) == 2 * (entropy.BLOCK + 1)
    assert re.fullmatch(r"[0-9a-f]{32}", trace.new())
    assert feedback.REQUEST_ID.fullmatch(feedback.new_request_id())


def test_a_forked_child_does_not_repeat_its_parents_ids():
    entropy.token_hex(1)  # the parent holds a partly used block
    read, write = os.pipe()
    held = entropy._lock
    held.acquire()  # as if another thread were drawing an id at the fork
    pid = os.fork()
    if pid:
        held.release()
    if pid == 0:  # the child: its next ids, to the parent (a deadlock would hang here)
        signal.alarm(10)
        os.close(read)
        os.write(write, "".join(entropy.token_hex(16) for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    parent = "".join(entropy.token_hex(16) for _ in range(8))
    assert len(child) == len(parent) == 256 and child != parent
