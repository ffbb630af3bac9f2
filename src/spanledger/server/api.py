"""What every JSON endpoint of the server shares: the bearer-token check, the reading of
query parameters (with errors that say which parameter is wrong) and the JSON answers
(money as exact decimal strings)."""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from spanledger.pricing.money import usd_str
from spanledger.store import MONEY_COLUMNS


class JSONResponse(Response):
    """A JSON answer encoded by orjson: a 38,000-row cost report in ~30 ms, not ~300 ms."""

    media_type = "application/json"

    def __init__(
        self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(content, status_code, headers)

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except (orjson.JSONEncodeError, TypeError):  # integers beyond 64 bits
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def jsonable(value: Any, key: str | None = None) -> Any:
    """Money as exact decimal strings, times as ISO 8601 UTC, JSON columns parsed."""
    if isinstance(value, dict):
        return {k: jsonable(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if key in MONEY_COLUMNS:
        if value is None or isinstance(value, str):  # None, or dollars already
            return value
        return usd_str(int(value))
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if key in ("attributes", "resource") and isinstance(value, str):
        return json.loads(value)
    return value


class BadQuery(ValueError):
    """A query parameter the API cannot use (answered 400); the message says which and why."""


def bearer_check(token: str | None) -> Callable[[Request], bool]:
    """Whether a request carries `Authorization: Bearer <token>` (always true without one)."""
    if token is None:
        return lambda request: True
    expected = f"Bearer {token}".encode()

    def authorized(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)

    return authorized


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 date or time parameter, as UTC when it names no zone."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name}={value!r} is not an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
