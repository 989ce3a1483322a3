"""What every ``workbench`` command shares: the console, and the workbench's own errors as
one clear line with exit status 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click


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
