"""SpanRecord: one span as every shell hands it to the core (decoded OTLP or a live SDK span)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


@dataclass(slots=True)
class SpanRecord:
    """The parts of an OTLP span that pricing, rollups and attribution need.

    IDs are lowercase hex (32 chars for traces, 16 for spans), as in OTLP/JSON;
    `parent_span_id` is "" for a root span."""

    trace_id: str
    span_id: str
    parent_span_id: str = ""
    name: str = ""
    start_ns: int = 0
    end_ns: int = 0
    status_code: int = STATUS_UNSET
    status_message: str = ""
    kind: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    scope: str = ""
    # The attributes and resource as the store's JSON text, when the compiled OTLP reader
    # wrote them while decoding (cheaper than at encode time); None: the store writes them.
    attributes_json: str | None = field(default=None, compare=False, repr=False)
    resource_json: str | None = field(default=None, compare=False, repr=False)

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id

    @property
    def failed(self) -> bool:
        return self.status_code == STATUS_ERROR or "error.type" in self.attributes

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)
