"""Keeping secrets out of logs, error messages and responses.

A model URL may carry credentials (``s3://KEY:SECRET@bucket/key``, ``https://user:pw@host``)
or a presigned query string (``?X-Amz-Signature=...``); a database URL may carry a password.
:func:`url` keeps what a reader needs to know which object was meant (scheme, host, path)
and drops the rest; :func:`text` does the same to a message that quotes such URLs (an
exception from fsspec, SQLAlchemy or botocore).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def url(value: str) -> str:
    """``value`` without credentials and query string: ``s3://bucket/key?…``."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "<unparsable URL>"
    try:
        host = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:  # a port out of range: urllib reads it only on .port
        host = parts.netloc.rpartition("@")[2]
    if parts.username or parts.password:
        host = f"…@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


def text(message: str) -> str:
    """``message`` with every URL in it passed through :func:`url`."""
    return _URL.sub(lambda m: url(m.group(0)), message)
