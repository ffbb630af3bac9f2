"""Budgets: stop a run before it spends more than it may.

A budget is entered with `with spanledger.budget(...)`. When it is used up, the *next*
model call is refused at span start, before its request leaves the process: the span is
marked and ended, and `BudgetExceeded` (or `LoopDetected`) is raised into the caller.
That exception is the only thing SpanLedger ever raises into the host, on purpose.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from opentelemetry import context

from spanledger.pricing.money import Femto, display, femto_from_usd, usd


class BudgetExceeded(RuntimeError):
    """A budget's dollars or LLM calls are used up; the call was not sent."""

    def __init__(self, budget: Budget, reason: str) -> None:
        self.budget = budget
        self.reason = reason
        super().__init__(
            f"{reason} (budget {budget.name!r}: spent {display(budget.spent)} "
            f"over {budget.llm_calls} LLM calls so far)"
        )

    @property
    def spent_usd(self) -> Decimal:
        return self.budget.spent_usd


class LoopDetected(BudgetExceeded):
    """The same tool was called with the same arguments more times than allowed."""


@dataclass
class Budget:
    """Limits for one run, and what the run has spent so far (thread-safe)."""

    max_usd: Decimal | None = None
    max_llm_calls: int | None = None
    max_tool_repeats: int | None = None
    name: str = "run"
    spent: Femto = 0  # femto-dollars of finished LLM calls
    llm_calls: int = 0  # LLM calls admitted (in flight or finished)
    _repeats: Counter[tuple[str, str]] = field(default_factory=Counter, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def spent_usd(self) -> Decimal:
        return usd(self.spent)

    def __post_init__(self) -> None:
        self._limit = None if self.max_usd is None else femto_from_usd(self.max_usd)

    def check_llm_call(self, model: str | None) -> None:
        """Refuse a call if this budget is used up (does not count it)."""
        with self._lock:
            if self._limit is not None and self.spent >= self._limit:
                raise BudgetExceeded(
                    self, f"budget of ${self.max_usd} used up; call to {model} refused"
                )
            if self.max_llm_calls is not None and self.llm_calls >= self.max_llm_calls:
                reason = f"limit of {self.max_llm_calls} LLM calls reached"
                raise BudgetExceeded(self, f"{reason}; call to {model} refused")

    def count_llm_call(self) -> None:
        with self._lock:
            self.llm_calls += 1

    def admit_tool_call(self, tool: str, arguments: str) -> None:
        with self._lock:
            self._repeats[(tool, arguments)] += 1
            repeats = self._repeats[(tool, arguments)]
            if self.max_tool_repeats is not None and repeats > self.max_tool_repeats:
                raise LoopDetected(
                    self,
                    f"tool {tool!r} called {repeats} times with the same arguments "
                    f"(limit {self.max_tool_repeats}); runaway loop stopped",
                )

    def charge(self, amount: Femto) -> None:
        with self._lock:
            self.spent += amount


_BUDGETS = context.create_key("spanledger-budgets")


def active_budgets(ctx: context.Context | None = None) -> tuple[Budget, ...]:
    """Budgets in force in a context, outermost first (a call is charged to all)."""
    return context.get_value(_BUDGETS, ctx) or ()  # type: ignore[return-value]


@contextmanager
def budget(
    max_usd: float | Decimal | str | None = None,
    *,
    max_llm_calls: int | None = None,
    max_tool_repeats: int | None = None,
    name: str = "run",
) -> Iterator[Budget]:
    """Limit the spend of the work in this block; nested budgets all apply.

    >>> with spanledger.budget(max_usd=0.50, max_llm_calls=40) as run:
    ...     run_agent()
    >>> run.spent_usd
    """
    limit = None if max_usd is None else Decimal(str(max_usd))
    if limit is not None and (not limit.is_finite() or limit < 0):
        raise ValueError(f"max_usd must be a non-negative amount, got {max_usd!r}")
    this = Budget(
        max_usd=limit, max_llm_calls=max_llm_calls, max_tool_repeats=max_tool_repeats, name=name
    )
    token = context.attach(context.set_value(_BUDGETS, (*active_budgets(), this)))
    try:
        yield this
    finally:
        context.detach(token)
