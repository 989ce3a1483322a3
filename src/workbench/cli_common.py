"""What every ``workbench`` command shares: the console, the workbench's own errors as
one clear line with exit status 2, and the event store's ``--db`` option."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

DB = click.option("--db", "db_url", help="Event store URL (default: $WORKBENCH_DB_URL or "
                                         "SQLite under $WORKBENCH_HOME).")


def console(stderr: bool = False) -> Any:
    from workbench.report import console as make

    return make(stderr)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the workbench's own errors into one clear line and exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from workbench.errors import WorkbenchError

        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            detail = f" ({json.dumps(exc.detail, default=str)})" if exc.detail else ""
            click.echo(f"error: {exc.message}{detail}", err=True)
            sys.exit(2)

    return wrapper


def run(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` now, the workbench's errors turned into one line (:func:`friendly`)."""
    return friendly(fn)()


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (values read as JSON when they parse) as a dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
