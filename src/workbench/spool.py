"""The event spool: events accepted while the database could not take them, on local disk
until they are replayed, and the dead-letter file of rows the database refused.

Layout of a store's spool directory (:func:`directory_for`)::

    seg-<time_ns>-<pid>-<n>.jsonl      a spooled batch, one JSON object per line
    seg-....jsonl.replay-<pid>         a batch being replayed by process <pid>
    tmp-<pid>-<n>                      a batch being written (never acknowledged)
    dead.jsonl                         rows the database refused, with the error

Each batch is written to a temporary file, flushed, ``fsync``'d and renamed into place, and
the directory is ``fsync``'d: a segment exists whole or not at all, so a crash (SIGKILL,
power loss) can lose only what was never acknowledged. Replay claims a segment by renaming
it (so replicas sharing a directory never replay one twice), inserts its rows with
"ignore duplicates" (a batch that was in fact committed before the connection dropped is
harmless), and deletes it. Segments claimed by a process that died are given back at start.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbench.settings import load

logger = logging.getLogger("workbench.spool")

Row = tuple[str, dict[str, Any]]  # (table, row)


def directory_for(store: Any, base: Path | None = None) -> Path:
    """The spool of the event store at URL ``store`` (or a SQLAlchemy engine's):
    ``<base>/<digest of the URL>``, where base is ``WORKBENCH_SPOOL_DIR``, else ``spool``
    under ``WORKBENCH_HOME`` (default ``~/.workbench``). One directory per store, so a spool
    is only ever replayed into the database it was meant for."""
    import hashlib

    if not isinstance(store, str):  # an engine: its URL, the password hidden
        store = store.url.render_as_string(hide_password=True)

    base = base or load().spool_base
    return Path(base) / hashlib.sha256(store.encode()).hexdigest()[:16]


class Spool:
    """A directory of spooled batches and a dead-letter file.

    Parameters
    ----------
    directory
        Where the segments live (created if missing); see :func:`directory_for`.
    max_bytes
        The most bytes of segments this spool will hold; :meth:`full` says when it is past.
    """

    def __init__(self, directory: Path | str, *, max_bytes: int = 1 << 30) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._seq = itertools.count()
        self.dead_path = self.directory / "dead.jsonl"
        self._recover()

    # -- writing ----------------------------------------------------------------------------

    def append(self, rows: list[Row]) -> Path:
        """Write ``rows`` as one durable segment; OSError when it cannot (a full disk, or
        the spool would pass ``max_bytes``)."""
        data = "".join(json.dumps({"table": table, "row": row}) + "\n" for table, row in rows)
        if self.bytes() + len(data) > self.max_bytes:
            raise OSError(f"the spool would pass its limit of {self.max_bytes} bytes")
        n = next(self._seq)
        tmp = self.directory / f"tmp-{os.getpid()}-{n}"
        final = self.directory / f"seg-{time.time_ns():020d}-{os.getpid()}-{n}.jsonl"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            self._sync_dir()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def dead(self, table: str, row: dict[str, Any], error: BaseException) -> None:
        """Keep a row the database refused, with why (the error's class and first line)."""
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        line = json.dumps({"ts": time.time(), "table": table, "error": reason[:500],
                           "row": row}, default=str) + "\n"
        with open(self.dead_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    # -- replay -----------------------------------------------------------------------------

    def segments(self) -> list[Path]:
        """Segments waiting to be replayed, oldest first."""
        return sorted(self.directory.glob("seg-*.jsonl"))

    def claim(self, segment: Path) -> Path | None:
        """Take ``segment`` for replay (None when another process took it first)."""
        claimed = segment.with_name(f"{segment.name}.replay-{os.getpid()}")
        try:
            os.replace(segment, claimed)  # atomic: exactly one claimant wins
        except FileNotFoundError:
            return None
        return claimed

    def release(self, claimed: Path) -> None:
        """Give a claimed segment back (its replay failed; it will be tried again)."""
        os.replace(claimed, claimed.with_name(claimed.name.rsplit(".replay-", 1)[0]))

    def done(self, claimed: Path) -> None:
        """A claimed segment's rows are in the database: forget it."""
        claimed.unlink(missing_ok=True)
        self._sync_dir()

    @staticmethod
    def rows(segment: Path) -> Iterator[Row]:
        """The rows of a segment (a line that does not parse is reported and skipped: only
        an fsync'd, renamed segment is ever read, so this means damage from outside)."""
        with open(segment, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    item = json.loads(line)
                    yield item["table"], item["row"]
                except (ValueError, KeyError, TypeError):
                    logger.error("spool segment %s line %d is damaged; skipped", segment.name,
                                 number)

    # -- state ------------------------------------------------------------------------------

    def bytes(self) -> int:
        """Bytes of segments waiting (claimed ones included)."""
        total = 0
        for path in self.directory.glob("seg-*"):
            with contextlib.suppress(FileNotFoundError):  # replayed meanwhile
                total += path.stat().st_size
        return total

    def full(self) -> bool:
        return self.bytes() >= self.max_bytes

    def dead_rows(self) -> int:
        """Rows in the dead-letter file."""
        try:
            with open(self.dead_path, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def _recover(self) -> None:
        """Give back segments claimed by processes that died; delete their temporary files
        (never acknowledged: a batch is acknowledged only once renamed into place)."""
        for path in self.directory.glob("seg-*.jsonl.replay-*"):
            pid = int(path.name.rsplit("-", 1)[1])
            if pid == os.getpid() or not _alive(pid):  # our pid: a dead one's, reused
                logger.warning("spool: %s was being replayed by a process that died; "
                               "it will be replayed again", path.name)
                self.release(path)
        for path in self.directory.glob("tmp-*"):
            pid = int(path.name.split("-")[1])
            if pid == os.getpid() or not _alive(pid):
                path.unlink(missing_ok=True)

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
