"""JAX's persistent compilation cache: a restarted service loads its compiled shape buckets
from disk instead of compiling them again.

``WORKBENCH_COMPILATION_CACHE`` names the directory; by default it is
``$BENTOML_HOME/workbench/jax-cache``, beside the model store (inside a bento's container,
the bento's own home), so every service and notebook sharing a model store shares the
compiled programs too. ``off`` turns it off; a directory already set through JAX's own
``JAX_COMPILATION_CACHE_DIR`` is kept. Entries are keyed by the program, the JAX version and
the device, so a stale or foreign entry is never used; a directory that cannot be written is
a warning from JAX, never an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.settings import OFF, load

_done: list[str | None] = []


def directory() -> Path | None:
    """Where compiled programs are kept, or None when the cache is off."""
    setting = (load().compilation_cache or "").strip()
    if setting.lower() in OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    home = os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    return Path(home) / "workbench" / "jax-cache"


def enable() -> str | None:
    """Point JAX at :func:`directory` (once per process, before the first compilation);
    returns the directory in use, or None."""
    if _done:
        return _done[0]
    import jax

    path = jax.config.jax_compilation_cache_dir
    if not path and (chosen := directory()) is not None:
        path = str(chosen)
        jax.config.update("jax_compilation_cache_dir", path)
        # The buckets compile in well under JAX's default threshold of one second each, and
        # there are many: keep them all.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _done.append(path or None)
    return _done[0]
