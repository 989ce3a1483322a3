"""The errors a user of the workbench can meet.

Every error says what was wrong and what was expected. The tree::

    WorkbenchError
    ├── InputError (ValueError)          a request or a row the model cannot take
    ├── ArtifactError                    a posterior artifact that cannot be trusted
    │   ├── CorruptArtifact              unreadable, truncated or altered on disk
    │   └── ArtifactMismatch             readable, but not what was asked for
    ├── ModelNotFound (LookupError)      no model, tag or alias by that name
    ├── EntityNotFound (LookupError)     an entity the online feature store does not have
    ├── StaleFeatures                    features older than their view's TTL (HTTP 422)
    ├── UnknownModelKind (LookupError)   no registered model function by that name
    ├── DiagnosticsRefused               an alias refused: the posterior failed its checks
    ├── DatasetError (ValueError)        a dataset or CSV that cannot be loaded
    ├── ConfigError (ValueError)         an invalid configuration
    ├── KeyNotFound (LookupError)        no API key by that name
    ├── InvalidToken                     a JWT that cannot be accepted (HTTP 401)
    ├── Conflict                         an action the experiment's state does not allow
    ├── SchemaError                      the event store is not at the code's schema revision
    │   └── NewerSchema                  migrated by a newer workbench than this one
    └── Unavailable                      the service cannot answer now (HTTP 503)
        ├── NotReady                     still loading or compiling
        └── ArmFailed                    an arm's model and its fallback both failed
"""

from __future__ import annotations

from typing import Any


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        """The JSON body served with a 4xx: ``{"error": ..., "detail": ...}``."""
        return {"error": self.message, "detail": self.detail}


class InputError(WorkbenchError, ValueError):
    """Rows or a request the model cannot take (shape, names, types, non-finite values)."""


class ArtifactError(WorkbenchError):
    """A posterior artifact that cannot be trusted."""


class CorruptArtifact(ArtifactError):
    """The artifact is unreadable, truncated, or its checksum does not match."""


class ArtifactMismatch(ArtifactError):
    """The artifact is readable but not what was expected (format, model id, kind)."""


class ModelNotFound(WorkbenchError, LookupError):
    """No model, tag or alias by that name in the model store."""


class EntityNotFound(WorkbenchError, LookupError):
    """An entity key whose features the online feature store does not have (HTTP 404)."""


class StaleFeatures(WorkbenchError):
    """Online features older than their feature view's TTL (HTTP 422)."""


class UnknownModelKind(WorkbenchError, LookupError):
    """No model function registered under that name."""


class DiagnosticsRefused(WorkbenchError):
    """An alias was refused because the posterior failed its diagnostics."""


class DatasetError(WorkbenchError, ValueError):
    """A dataset name or CSV file that cannot be loaded."""


class ConfigError(WorkbenchError, ValueError):
    """An invalid configuration value."""


class Unavailable(WorkbenchError):
    """The service cannot answer now; the client may retry (served as 503)."""


class NotReady(Unavailable):
    """The server is still loading or compiling."""


class ArmFailed(Unavailable):
    """Neither the assigned arm nor the control could answer."""


class Conflict(WorkbenchError):
    """An action the experiment's current state does not allow (HTTP 409), e.g. ramping a
    concluded experiment."""


class KeyNotFound(WorkbenchError, LookupError):
    """No API key by that name (HTTP 404)."""


class InvalidToken(WorkbenchError):
    """A JWT that cannot be accepted (HTTP 401); the message says why."""


class SchemaError(WorkbenchError):
    """The event store's schema is not the revision this workbench needs: made before
    migrations or at an older revision (``workbench db upgrade`` brings it to head).

    Neither input nor a passing outage, so served as a plain 500: the message names the
    database and the command to run, which is for the operator's log, not for clients."""


class NewerSchema(SchemaError):
    """The event store is at a schema revision this workbench does not know: a newer
    workbench migrated it (upgrade the workbench, not the store)."""
