"""`spanledger serve` configuration: a YAML file, with command-line flags on top.

```yaml
db: spanledger.duckdb
http: {host: 127.0.0.1, port: 4318, max_body_bytes: 16777216}
grpc: {host: 127.0.0.1, port: 4317, enabled: true}  # enabled: false turns gRPC off
token: s3cret                            # bearer token for OTLP and the API
rates: [rates/acme.yaml]
use_default_prices: true
forward: {url: http://collector:4318, headers: {x-api-key: abc}, max_queued_spans: 20000}
attribution: {user: [user.id, enduser.id], team: [acme.team]}
finalize_after_seconds: 10
loop_threshold: 10
max_queued_spans: 100000
```

A port of 0 (HTTP or gRPC) binds any free port; the server reports the one it got.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


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


class ServeConfig(_Strict):
    db: str = "spanledger.duckdb"
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
