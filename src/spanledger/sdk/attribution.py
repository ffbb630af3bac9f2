"""`attribute(...)`: who a piece of work is for, set once, carried everywhere.

Dimensions are put in OTel baggage, so they reach every span started in the context
(the SpanLedgerProcessor copies them on at span start) and cross to other services in the
W3C `baggage` header with the default propagators.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import baggage, context

from spanledger import conventions as c

_EXTRA_PREFIX = "spanledger."


@contextmanager
def attribute(
    *,
    user_id: str | None = None,
    department: str | None = None,
    tenant: str | None = None,
    agent: str | None = None,
    conversation: str | None = None,
    **extra: str,
) -> Iterator[None]:
    """Attribute all work in this block (and downstream services it calls) to these
    dimensions. Extra keywords become `spanledger.<name>` attributes.

    >>> with spanledger.attribute(user_id="u-42", department="research"):
    ...     run_agent()
    """
    named = {
        "user_id": user_id,
        "department": department,
        "tenant": tenant,
        "agent": agent,
        "conversation": conversation,
    }
    entries = {c.ATTRIBUTION_KEYWORDS[name]: v for name, v in named.items() if v is not None}
    entries.update({_EXTRA_PREFIX + name: v for name, v in extra.items() if v is not None})
    reserved = [key for key in entries if not _attributable(key)]
    if reserved:
        raise ValueError(f"{', '.join(reserved)}: names SpanLedger writes, not dimensions")
    ctx = context.get_current()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, str(value), ctx)
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


_KNOWN = frozenset(c.ATTRIBUTION_KEYWORDS.values())
# What SpanLedger itself writes: baggage from a caller must never set these (forged costs).
_RESERVED = frozenset({"cost", "price", "cache", "budget", "usage"})


def _attributable(key: str) -> bool:
    if key in _KNOWN:
        return True
    if not key.startswith(_EXTRA_PREFIX):
        return False
    return key[len(_EXTRA_PREFIX) :].split(".", 1)[0] not in _RESERVED


def baggage_dimensions(ctx: context.Context | None) -> Mapping[str, Any]:
    """The attribution entries in a context's baggage (ours, not arbitrary baggage)."""
    entries = baggage.get_all(ctx)
    if not entries:
        return {}
    return {k: v for k, v in entries.items() if _attributable(k)}
