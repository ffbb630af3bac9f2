"""SpanLedger: the cost of every span of an LLM application's OpenTelemetry traces.

The in-process API (`instrument`, `attribute`, `budget`, ...) is loaded on first use, so
the CLI and the server do not pay for the OpenTelemetry SDK import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from spanledger.sdk import (
        Budget,
        BudgetExceeded,
        CostExporter,
        Ledger,
        LoopDetected,
        attribute,
        budget,
        instrument,
    )

__all__ = [
    "Budget",
    "BudgetExceeded",
    "CostExporter",
    "Ledger",
    "LoopDetected",
    "attribute",
    "budget",
    "instrument",
]
_SDK_NAMES = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        from spanledger import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'spanledger' has no attribute {name!r}")
