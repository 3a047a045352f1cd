"""A per-client token bucket: how often one client (an IP address) may join the study.

In memory, per server process: with several processes each one allows the rate, so a fleet
behind one proxy is better limited at the proxy. Clients idle long enough to have a full bucket
are forgotten, so memory stays bounded by the clients active in the last minute or so.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``per_minute`` requests per client on average, up to ``burst`` at once."""

    def __init__(
        self,
        per_minute: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("the rate must be positive")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst if burst is not None else max(1, round(per_minute)))
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time)
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def retry_after(self, client: str) -> int:
        """0 if ``client`` may go ahead now (a token is taken), else whole seconds to wait."""
        now = self.clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {
            client: (tokens, then)
            for client, (tokens, then) in self._buckets.items()
            if now - then < full_after
        }
        self._next_sweep = now + 60.0
