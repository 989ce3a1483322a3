"""The workbench's settings: every ``WORKBENCH_*`` environment variable, typed, checked and
documented in one place (pydantic-settings).

An entry point (a bento, a CLI command, the dashboard) calls :func:`load` once and passes
the object, or the values it holds, down; library code takes them as parameters. A value
that does not parse is a :class:`~workbench.errors.ConfigError` naming the variable, the
value and what it expects, before anything starts. An empty variable counts as unset.
On/off settings take ``on``/``off`` (or ``true``/``false``, ``1``/``0``, ``yes``/``no``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from workbench import redact
from workbench.errors import ConfigError

PREFIX = "WORKBENCH_"
_PASSWORD = re.compile(r"(password=).*", re.IGNORECASE)
ON = ("on", "1", "true", "yes")
OFF = ("off", "0", "false", "no")


def _on_off(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ON:
            return True
        if word in OFF:
            return False
        raise ValueError("expected on or off")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower().replace("_", "-") if isinstance(value, str) else value


def _rows(value: Any) -> Any:  # a number of rows, or off (0)
    return 0 if isinstance(value, str) and value.strip().lower() in (*OFF, "none") else value


OnOff = Annotated[bool, BeforeValidator(_on_off)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(gt=0)]


def _f(default: Any, description: str) -> Any:
    return Field(default, description=description)


class Settings(BaseSettings):
    """All of the workbench's settings; the field ``x`` is ``WORKBENCH_X``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True,
                                      extra="ignore", frozen=True)

    # -- where state lives -----------------------------------------------------------------
    home: Path = _f(Path("~/.workbench"), "state: the SQLite event store, spools, features")
    db_url: str | None = _f(None, "the event store (SQLAlchemy URL); default SQLite in home")
    spool_dir: Path | None = _f(None, "event spools; default home/spool")
    # -- what is served --------------------------------------------------------------------
    models: str | None = _f(None, "the Predictor's models, e.g. champion,challenger")
    model_url: str | None = _f(None, "a model to import at startup (s3://.../m.bentomodel)")
    experiment: Path | None = _f(None, "the experiment's YAML; default champion vs challenger")
    arms: Annotated[Literal["in-process", "predictor"] | None, BeforeValidator(_lower)] = _f(
        None, "where the gateway serves its arms; default in-process (predictor on GPU)")
    follow_aliases: OnOff | None = _f(None, "a Predictor served from source follows aliases")
    follow_interval: Positive = _f(1.0, "seconds between two looks at the aliases")
    follow_grace: Seconds = _f(10.0, "seconds a replaced version keeps answering")
    compilation_cache: str | None = _f(None, "JAX's compilation cache directory, or off; "
                                       "default $BENTOML_HOME/workbench/jax-cache")
    # -- requests --------------------------------------------------------------------------
    max_rows: Count = _f(1024, "rows per /predict request")
    max_stream_rows: Count = _f(100_000, "rows per /predict/stream request")
    max_body_bytes: Count = _f(4 * 1024 * 1024, "bytes per request body")
    ood_rate: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = _f(
        0.01, "training rows flagged ood (false alarms); 0: no flag")
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = _f(
        "json", "log lines: json or text")
    access_log: OnOff = _f(True, "one log line per request")
    tracing: OnOff = _f(False, "BentoML's OpenTelemetry spans (set up its exporter too)")
    # -- the event log ---------------------------------------------------------------------
    event_log: OnOff = _f(True, "record predictions and outcomes")
    event_ack: Annotated[Literal["durable", "async"], BeforeValidator(_lower)] = _f(
        "durable", "answer once the event is durable, or once queued (async)")
    event_ack_timeout_seconds: Positive = _f(10.0, "wait for durability, then 503")
    event_queue: Count = _f(10_000, "events queued for the writer")
    event_queue_wait_seconds: Seconds = _f(2.0, "wait for room in the queue, then 503")
    event_retry_seconds: Positive = _f(2.0, "probe of an unreachable store")
    event_inputs: Annotated[Literal["raw", "hash", "none"], BeforeValidator(_lower)] = _f(
        "raw", "what the log keeps of the rows: raw, hash or none")
    db_down_seconds: Seconds = _f(30.0, "store unreachable this long: not ready")
    spool_max_bytes: Count = _f(1 << 30, "bytes an event spool may hold")
    # -- the gateway -----------------------------------------------------------------------
    state_poll_seconds: Positive = _f(1.0, "replicas re-read the experiment's state")
    feedback_grace_seconds: Seconds = _f(5.0, "feedback waits this long for its request")
    analysis_ttl_seconds: Seconds = _f(2.0, "GET /analysis reuses a read-out; 0 never")
    # -- the prediction cache --------------------------------------------------------------
    prediction_cache: Annotated[int, Field(ge=0), BeforeValidator(_rows)] = _f(
        0, "rows kept in process; 0 or off: no cache")
    prediction_cache_redis: str | None = _f(None, "redis://host:port/db shared by replicas")
    prediction_cache_seconds: Positive = _f(3600.0, "lifetime of a Redis entry")
    # -- features (Feast) ------------------------------------------------------------------
    feature_repo: Path | None = _f(None, "the Feast repository; default home/features")
    feature_store_yaml: str = _f("feature_store.yaml", "its configuration file")
    feature_redis: str | None = _f(None, "Redis online store (host:port)")
    feature_missing: Annotated[Literal["reject", "mean"], BeforeValidator(_lower)] = _f(
        "reject", "an entity the store lacks: reject (404) or mean")
    feature_stale: Annotated[Literal["reject", "mean", "serve"], BeforeValidator(_lower)] = _f(
        "reject", "a value past its TTL: reject (422), mean or serve")
    feature_skew: Annotated[Literal["refuse", "warn"], BeforeValidator(_lower)] = _f(
        "refuse", "definitions changed since training: refuse (not ready) or warn")
    feature_cache_seconds: Seconds = _f(5.0, "online features cached; 0 off")
    # -- security --------------------------------------------------------------------------
    auth: OnOff = _f(True, "API keys and JWTs required (off: local experiments only)")
    key_pepper: SecretStr = _f(SecretStr(""), "HMAC pepper of stored key hashes (secret)")
    key_cache_seconds: Seconds = _f(5.0, "a revoked key stops working within this")
    jwks: str | None = _f(None, "JWT key set: a file or URL")
    jwt_issuer: str | None = _f(None, "required with jwks")
    jwt_audience: str | None = _f(None, "required with jwks")
    jwt_scope_claim: str = _f("scope", "the claim holding a token's scopes")
    jwt_leeway_seconds: Seconds = _f(30.0, "clock skew allowed on exp/nbf")
    redis_url: SecretStr | None = _f(None, "Redis for rate-limit counters shared by replicas")
    rate_limit_predict: str = _f("1000/second", "per principal; off: none")
    rate_limit_feedback: str = _f("1000/second", "per principal; off: none")
    rate_limit_batch: str = _f("100/minute", "per principal; off: none")
    rate_limit_admin: str = _f("10/second", "per principal; off: none")
    rate_limit_on_redis_error: Annotated[Literal["local", "open", "closed"],
                                         BeforeValidator(_lower)] = _f(
        "local", "Redis down: count locally, let all through (open) or refuse (closed)")
    # -- the dashboard ---------------------------------------------------------------------
    gateway_url: str | None = _f(None, "gateways the dashboard watches, comma-separated")
    api_key: SecretStr | None = _f(None, "the dashboard's and simulator's key for them")
    dashboard_refresh: Positive = _f(5.0, "seconds between dashboard refreshes")
    dashboard_cookie_secret: SecretStr | None = _f(None, "signs logins; default per start")

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def spool_base(self) -> Path:
        """Where event spools live: ``spool_dir``, else ``home/spool``."""
        return (self.spool_dir or self.home / "spool").expanduser()


class _Given(Settings):
    """Settings from a given mapping only (not the process's environment)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any,
                                   **_: Any) -> tuple[Any, ...]:
        return (init_settings,)


def variable(field: str) -> str:
    """The environment variable behind ``field``."""
    return PREFIX + field.upper()


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """The settings in the process's environment (or ``environ``), ``overrides`` on top.

    Parsed once per distinct set of ``WORKBENCH_*`` values (a later call with the same
    values returns the same frozen object): cheap enough for any constructor.

    Raises
    ------
    ConfigError
        Naming every variable that does not parse, its value and what it expects.
    """
    found = tuple(sorted((k[len(PREFIX):].lower(), v.strip()) for k, v in
                         (os.environ if environ is None else environ).items()
                         if k.startswith(PREFIX) and v.strip()))
    return _parse(found, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=64)
def _parse(found: tuple[tuple[str, str], ...], overrides: tuple[tuple[str, Any], ...]
           ) -> Settings:
    try:
        return _Given(**(dict(found) | dict(overrides)))
    except ValidationError as exc:
        problems = {variable(str(e["loc"][0])): {
            "value": _refused_value(e), "expected": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors(include_url=False)}
        raise ConfigError("invalid setting: " + "; ".join(
            f"{name}={p['value']} ({p['expected']})" for name, p in problems.items()),
            detail=problems) from None


def _refused_value(error: Any) -> str:
    """A refused value as an error message shows it (a secret's never)."""
    if str(error["loc"][0]) in SECRET:
        return "(secret)"
    return repr(error.get("input"))[:80]


SECRET = {name for name, f in Settings.model_fields.items()
          if f.annotation in (SecretStr, SecretStr | None)}


def shown(value: Any) -> str:
    """A setting's value as the README and ``workbench settings`` print it: never a secret,
    nor the credentials or query string of a URL, nor a Feast ``password=``."""
    if isinstance(value, SecretStr):
        return "(set)" if value.get_secret_value() else "unset"
    if isinstance(value, str) and ("://" in value or "password=" in value):
        return ",".join(_PASSWORD.sub(r"\1…", redact.url(part) if "://" in part else part)
                        for part in value.split(","))
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table(current: Settings | None = None) -> str:
    """A Markdown table of every setting: variable, default, meaning; with ``current``, a
    column of its values too (``workbench settings``)."""
    head = "| variable | default |" + (" value |" if current else "") + " what |"
    lines = [head, "|---" * head.count(" |") + "|"]
    for name, field in Settings.model_fields.items():
        now = f" {shown(getattr(current, name))} |" if current else ""
        lines.append(f"| `{variable(name)}` | {shown(field.default)} |{now} "
                     f"{field.description} |")
    return "\n".join(lines)
