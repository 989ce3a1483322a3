"""A log capture for the tests: the workbench's loggers may not propagate to the root
logger (``logs.log_to_stderr``), where pytest's ``caplog`` listens."""

from __future__ import annotations

import logging


class Records(logging.Handler):
    """Collects a logger's records (the workbench's loggers may not propagate to root)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)
