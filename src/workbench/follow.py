"""Following alias moves while serving: a Predictor served from the model store answers
with the version an alias points at now, within seconds of ``workbench promote`` (or
``workbench models alias|rollback``), without a restart and without a failed request.

The alias registry (``$BENTOML_HOME/workbench/aliases.json``) is replaced atomically on
every change, so :class:`AliasFollower` only stats it every ``interval`` seconds and reads
it when it changed. For each served ref that is an alias now pointing elsewhere it loads
the new posterior and compiles every shape bucket on its own thread, while the old version
keeps answering; then it swaps the server's lineup in one assignment
(:meth:`~workbench.serving.ModelServer.repoint`). The old version finishes the requests it
already has and is dropped once idle, ``grace`` seconds later. A version that cannot be
served (corrupt, missing, failing to compile) leaves the old one serving: the reason is
logged, shown under ``follow`` in ``/metadata`` and ``/models``, and the move is tried
again on the registry's next change.

A built bento never follows: it serves the tags frozen into it at build time (rebuild and
roll it out, as ``workbench promote`` prints). From source, following is on unless the
bento argument ``follow`` or ``$WORKBENCH_FOLLOW_ALIASES`` says ``false`` (off by default
for the Predictor inside the experiment gateway, which must serve the tags its arms were
resolved to); the period and the grace come from ``$WORKBENCH_FOLLOW_INTERVAL`` (1 s) and
``$WORKBENCH_FOLLOW_GRACE`` (10 s).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.artifact import Posterior
from workbench.errors import WorkbenchError
from workbench.lineup import Served
from workbench.serving import ModelServer, model_spec
from workbench.settings import OFF, Settings
from workbench.settings import load as load_settings

logger = logging.getLogger("workbench.follow")



def wanted(arg: Any = None, *, built: bool, default: bool = True,
           settings: Settings | None = None) -> bool:
    """Whether a Predictor follows its aliases: never when ``built`` (a bento); else as the
    bento argument ``follow`` says, else ``$WORKBENCH_FOLLOW_ALIASES``, else ``default``."""
    if built:
        return False
    if arg not in (None, ""):
        return str(arg).strip().lower() not in OFF
    chosen = (settings or load_settings()).follow_aliases
    return default if chosen is None else chosen


def followed(spec: str | None) -> list[str]:
    """The refs of a ``models`` spec that may follow: all but those pinned as ``ref=tag``."""
    return [ref for ref, tag in model_spec(spec).items() if tag is None]


def stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the file is replaced (mtime, inode, size); None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class AliasFollower:
    """Keeps a :class:`~workbench.serving.ModelServer`'s aliases on the versions the model
    store's aliases point at (see the module's docstring).

    Parameters
    ----------
    server
        The server to keep up to date; it reports this follower under ``follow``.
    refs
        The refs that may follow (default: every served ref that is an alias).
    interval, grace
        Seconds between two looks at the registry; seconds an unused version is kept
        after its last request before it is dropped (default: ``settings``, else read now).
    load
        Loads the posterior of a tag (default: :func:`workbench.store.get`, which checks
        the artifact's checksum and never executes code).
    """

    def __init__(self, server: ModelServer, *, refs: Iterable[str] | None = None,
                 interval: float | None = None, grace: float | None = None,
                 load: Callable[[str], Posterior] | None = None,
                 settings: Settings | None = None) -> None:
        from workbench import store

        self.server = server
        self.refs = None if refs is None else set(refs)
        s = settings or load_settings()
        self.interval = s.follow_interval if interval is None else interval
        self.grace = s.follow_grace if grace is None else grace
        self.load = load or store.get
        self.registry = store.registry_file()
        self.swaps: deque[dict[str, Any]] = deque(maxlen=20)
        self.failures: dict[str, dict[str, Any]] = {}
        self.registry_error: str | None = None
        self._watching: dict[str, str] = {}  # followed ref -> its tag in the store
        self._retiring: dict[str, tuple[Served, float]] = {}
        self._seen: Any = object()  # never equal to a stamp: the first look reads the file
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        server.follower = self

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> AliasFollower:
        """Follow on a daemon thread; it waits for the server's warm-up before moving."""
        self._thread = threading.Thread(target=self._run, name="workbench-follow",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        logger.info("workbench: following alias moves in %s (every %.1fs)", self.registry,
                    self.interval)
        while not self._stop.is_set():
            try:
                if self.server.ready:
                    self.check()
                self._retire_idle()
            except Exception:  # never let the follower die: the service serves on
                logger.exception("workbench: following aliases failed; retrying")
            self._stop.wait(self.interval)

    def check(self) -> list[dict[str, Any]]:
        """Look at the registry once; follow every served alias that moved. Returns the
        swaps made (``alias``, ``from``, ``to``, ``at``, ``seconds``)."""
        from workbench import store

        seen = stamp(self.registry)  # before reading: a write after it is seen next time
        if seen == self._seen:
            return []
        self._seen = seen
        try:
            aliases = store.aliases()
        except WorkbenchError as exc:  # e.g. a hand-edited registry that is not JSON
            self.registry_error = f"cannot read the alias registry: {exc.message}"
            logger.error("workbench: %s; still serving %s", self.registry_error,
                         self.server.refs)
            return []
        self.registry_error = None
        served = self.server.refs
        watching = {r: t for r, t in aliases.items() if r in served and self._may(r)}
        with self._lock:
            self._watching = watching
            for ref in list(self.failures):
                if aliases.get(ref) in (None, served.get(ref)):  # moved back: nothing failing
                    del self.failures[ref]
        swaps = []
        for ref, target in watching.items():
            if target != served[ref]:
                swap = self._move(ref, served[ref], target)
                if swap is not None:
                    swaps.append(swap)
        return swaps

    def _may(self, ref: str) -> bool:
        return self.refs is None or ref in self.refs

    def _move(self, ref: str, old: str, new: str) -> dict[str, Any] | None:
        started = time.perf_counter()
        logger.info("workbench: %s moved %s -> %s; loading and compiling it while %s "
                    "answers", ref, old, new, old)
        try:
            served = self.server.prepare(new, self.load)
        except Exception as exc:
            failure = {"alias": ref, "tag": new, "at": _now(),
                       "error": f"cannot serve {new} for {ref!r}: {type(exc).__name__}: {exc}"}
            with self._lock:
                self.failures[ref] = failure
            logger.error("workbench: %s; still serving %s (tried again on the registry's "
                         "next change)", failure["error"], old)
            return None
        retired = self.server.repoint(ref, served)
        swap = {"alias": ref, "from": old, "to": new, "at": _now(),
                "seconds": round(time.perf_counter() - started, 3)}
        with self._lock:
            self.failures.pop(ref, None)
            self.swaps.append(swap)
            if retired is not None:
                self._retiring[retired.tag] = (retired, time.monotonic() + self.grace)
        logger.info("workbench: %s now serves %s (was %s; loaded and compiled in %.1fs)",
                    ref, new, old, swap["seconds"])
        return swap

    def _retire_idle(self) -> None:
        now = time.monotonic()
        for tag, (served, due) in list(self._retiring.items()):
            if now >= due and served.batcher.pending == 0:
                with self._lock:
                    del self._retiring[tag]
                if self.server.retire(tag):
                    logger.info("workbench: dropped %s (no alias serves it any more)", tag)

    # -- description ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """``follow`` in ``/metadata`` and ``/models``."""
        with self._lock:
            failures = {ref: dict(f) for ref, f in self.failures.items()}
            errors = [f["error"] for f in failures.values()]
            errors += [self.registry_error] if self.registry_error else []
            return {
                "enabled": True,
                "watching": dict(self._watching),
                "registry": str(self.registry),
                "interval_seconds": self.interval,
                "grace_seconds": self.grace,
                "swaps": list(self.swaps),
                "retiring": sorted(self._retiring),
                "failures": failures,
                "error": "; ".join(errors) or None,
            }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
