"""Health: errors the SDK swallowed so the host kept running, counted so they are seen."""

from __future__ import annotations

import threading
from collections import Counter


class Health:
    """Counts of swallowed errors by where they happened (pricing, export, budget, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: Counter[str] = Counter()

    def error(self, where: str) -> None:
        with self._lock:
            self._errors[where] += 1

    @property
    def errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._errors)
