"""What every JSON endpoint of the server shares: the bearer-token check and the reading of
query parameters, with errors that say which parameter is wrong."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable

from starlette.requests import Request


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
