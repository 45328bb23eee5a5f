"""Per-annotator request-rate limit for the ranking app: one token bucket in memory per key.

Keys are what a client cannot mint at will: an authenticated annotator's id, else (no token, a wrong
token, sign-in) the client's address, so forged tokens do not each get a fresh bucket. Behind a reverse
proxy every unauthenticated request shares the proxy's address. A refused request gets 429 with a JSON
"detail" naming the limit and a Retry-After header, before it touches the database.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from fastapi import HTTPException

# Requests per second per annotator: a person ranking K responses sends ~2 requests per ranking, a few
# per minute; the page's own loads are a handful. 20/s with bursts of 40 is never reached by hand.
DEFAULT_RATE = 20.0
# Idle buckets are full again and carry no state; past this many keys they are dropped, which bounds
# memory when requests arrive from very many addresses.
MAX_KEYS = 10_000


class RateLimiter:
    """`rate` requests per second per key with bursts of `burst` (default 2 s worth); rate 0 = no limit.

    Thread-safe: the app's sync routes call `check` from the server's worker threads.
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not rate >= 0:
            raise ValueError(f"rate limit: expected a number of requests per second >= 0 (0 = off), got {rate}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, 2 * self.rate)
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, at time)
        self._lock = threading.Lock()

    def wait(self, key: tuple[str, str]) -> float:
        """Spend one request of `key`'s bucket: 0.0 if allowed, else the seconds until one is."""
        if self.rate == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
                self._drop_idle(now)
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def check(self, key: tuple[str, str]) -> None:
        """Raise 429 (detail: the limit and when to retry; Retry-After header) when `key` is over."""
        wait = self.wait(key)
        if wait > 0:
            raise HTTPException(
                429, f"rate limit exceeded: at most {self.rate:g} requests per second per {key[0]} "
                     f"(bursts of {self.burst:g}); retry in {wait:.2f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def _drop_idle(self, now: float) -> None:
        """Forget buckets that have refilled (their next request would start full anyway)."""
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
