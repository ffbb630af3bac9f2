"""`spanledger serve` configuration: a YAML file, with command-line flags on top.

```yaml
db: spanledger.duckdb
db_memory_limit: 2GB                     # DuckDB's buffer memory (default: 80% of the RAM)
db_checkpoint_threshold: 256MB           # WAL size that triggers a checkpoint
http: {host: 127.0.0.1, port: 4318, max_body_bytes: 16777216}
grpc: {host: 127.0.0.1, port: 4317, enabled: true}  # enabled: false turns gRPC off
token: s3cret                            # bearer token for OTLP and the API
rates: [rates/acme.yaml]
use_default_prices: true
forward: {url: http://collector:4318, headers: {x-api-key: abc}, max_queued_spans: 20000}
attribution: {user: [user.id, enduser.id], team: [acme.team]}
finalize_after_seconds: 10
loop_threshold: 10
max_queued_spans: 100000                 # spans priced and waiting to be stored
max_waiting_requests: 64                 # requests waiting to be decoded
alerts:                                  # see spanledger.server.alerts for the semantics
  webhook: {url: http://hooks.example/spanledger, headers: {}, timeout_seconds: 5, max_attempts: 5}
  dashboard_url: http://spanledger.internal:4318  # links in alerts (default: this server)
  rules:
    - {name: spend-spike, kind: spend_rate, scope: agent, window: 5m, baseline: 1h, ratio: 3,
       min_usd: 0.50}
    - {name: costly-trace, kind: trace_cost, max_usd: 0.25}
    - {name: runaway, kind: loop}
    - {name: retry-waste, kind: retry_share, scope: agent, window: 15m, max_share: 0.2,
       min_usd: 0.10}
    - {name: unpriced, kind: unpriced_model}
```

A port of 0 (HTTP or gRPC) binds any free port; the server reports the one it got.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from spanledger.conventions import DEFAULT_DIMENSIONS


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listener(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class HttpListener(Listener):
    port: int = Field(default=4318, ge=0, le=65535)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)


class GrpcListener(Listener):
    port: int = Field(default=4317, ge=0, le=65535)
    enabled: bool = True


class Forward(_Strict):
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = {}
    max_queued_spans: int = Field(default=20_000, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _seconds(value: object) -> object:
    """`30s`, `5m`, `1h`, `1d` (or a plain number of seconds) -> seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 1h or 1d")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
AlertKind = Literal["spend_rate", "trace_cost", "loop", "retry_share", "unpriced_model"]
WINDOW_KINDS = frozenset({"spend_rate", "retry_share"})
SPAN_SCOPES = frozenset({"model", "provider"})  # scopes read from the span, not attribution
# Which optional settings each kind takes (others are refused, so a typo is not ignored).
_RULE_FIELDS: dict[str, frozenset[str]] = {
    "spend_rate": frozenset({"scope", "window", "baseline", "ratio", "min_usd"}),
    "trace_cost": frozenset({"max_usd"}),
    "loop": frozenset({"repeats"}),
    "retry_share": frozenset({"scope", "window", "max_share", "min_usd"}),
    "unpriced_model": frozenset({"window"}),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "spend_rate": ("min_usd",),
    "trace_cost": ("max_usd",),
    "retry_share": ("max_share",),
}
_DEFAULT_WINDOW = {"spend_rate": 300.0, "retry_share": 300.0, "unpriced_model": 3600.0}


class AlertRule(_Strict):
    """One alert rule; which settings apply depends on `kind` (spanledger.server.alerts)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)
    kind: AlertKind
    scope: str | None = None  # a dimension (user, agent, ...), model or provider; none: all
    window: Duration | None = None
    baseline: Duration | None = None
    ratio: Decimal | None = Field(default=None, ge=1)
    min_usd: Decimal | None = Field(default=None, ge=0)
    max_usd: Decimal | None = Field(default=None, ge=0)
    max_share: Decimal | None = Field(default=None, ge=0, lt=1)
    repeats: int | None = Field(default=None, ge=1)  # loop: more calls than this is a loop

    @model_validator(mode="after")
    def _fits_kind(self) -> AlertRule:
        allowed = _RULE_FIELDS[self.kind]
        extra = sorted(
            name
            for name in ("scope", "window", "baseline", "ratio", "min_usd", "max_usd",
                         "max_share", "repeats")
            if getattr(self, name) is not None and name not in allowed
        )  # fmt: skip
        if extra:
            raise ValueError(
                f"rule {self.name!r}: a {self.kind} rule does not take {', '.join(extra)} "
                f"(it takes {', '.join(sorted(allowed)) or 'nothing else'})"
            )
        missing = [name for name in _REQUIRED.get(self.kind, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"rule {self.name!r}: a {self.kind} rule needs {', '.join(missing)}")
        if self.kind in _DEFAULT_WINDOW and self.window is None:
            self.window = _DEFAULT_WINDOW[self.kind]
        if self.kind == "spend_rate":
            self.baseline = 3600.0 if self.baseline is None else self.baseline
            self.ratio = Decimal(3) if self.ratio is None else self.ratio
            if self.baseline < self.window:  # type: ignore[operator]
                raise ValueError(
                    f"rule {self.name!r}: baseline ({self.baseline:g}s) must be at least the "
                    f"window ({self.window:g}s)"
                )
        if self.kind == "retry_share" and self.min_usd is None:
            self.min_usd = Decimal(0)
        return self


class AlertWebhook(_Strict):
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = {}
    timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    max_queued: int = Field(default=1000, gt=0)  # alerts waiting to be sent; more are dropped


class Alerts(_Strict):
    webhook: AlertWebhook | None = None
    dashboard_url: str | None = Field(default=None, pattern=r"^https?://")
    log: bool = True  # each alert and resolution as a WARNING on the spanledger.alerts logger
    evaluate_seconds: float = Field(default=5.0, gt=0)  # how often windows are re-evaluated
    keep_resolved: int = Field(default=200, ge=0)  # resolved alerts /api/alerts still shows
    rules: list[AlertRule] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Alerts:
        names = [rule.name for rule in self.rules]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(twice)}")
        return self


class ServeConfig(_Strict):
    db: str = "spanledger.duckdb"
    db_memory_limit: str | None = Field(
        default=None, pattern=r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)\s*$"
    )
    db_checkpoint_threshold: str = Field(
        default="256MB", pattern=r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$"
    )
    http: HttpListener = HttpListener()
    grpc: GrpcListener = GrpcListener()
    token: str | None = None
    rates: list[str] = []
    use_default_prices: bool = True
    forward: Forward | None = None
    attribution: dict[str, list[str]] | None = None
    finalize_after_seconds: float = Field(default=10.0, ge=0)
    loop_threshold: int = Field(default=10, ge=1)
    max_queued_spans: int = Field(default=100_000, gt=0)
    max_waiting_requests: int = Field(default=64, gt=0)
    alerts: Alerts | None = None

    @model_validator(mode="after")
    def _alert_scopes(self) -> ServeConfig:
        if self.alerts is None:
            return self
        known = {*DEFAULT_DIMENSIONS, *(self.attribution or {}), *SPAN_SCOPES}
        for position, rule in enumerate(self.alerts.rules):
            if rule.scope is not None and rule.scope not in known:
                raise ValueError(
                    f"alerts.rules.{position} ({rule.name}): scope {rule.scope!r} is not a "
                    f"dimension; use one of {', '.join(sorted(known))}"
                )
        return self

    @classmethod
    def load(cls, path: str | Path | None) -> ServeConfig:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config is a mapping of settings")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise ConfigError(f"{path}: {problems}") from None
