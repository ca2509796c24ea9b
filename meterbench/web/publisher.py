"""Bounded, drop-oldest fan-out of live-view events (DESIGN.md "Live view").

The bench calls :meth:`EventPublisher.publish` with a plain dict carrying a ``type``
("state", "reading", "point", "verdict", "warning", ...). Publishing never blocks: each
subscriber has its own bounded queue and, when full, its oldest event is dropped and counted.
So a slow or stalled browser loses events, never delays a reading, a device event or a verdict.
Standard library only: the bench may hold a publisher without importing the web server.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Protocol


class Publisher(Protocol):
    """What the bench (or a replay) calls; implemented by :class:`EventPublisher`."""

    def publish(self, event: dict[str, Any]) -> None:
        """Hand one event over without blocking."""


class Subscription:
    """One consumer's bounded queue; :meth:`get` waits up to ``timeout_s`` seconds."""

    def __init__(self, capacity: int, first: list[dict[str, Any]]) -> None:
        self._events: deque[dict[str, Any]] = deque(first, maxlen=max(capacity, len(first)))
        self._capacity = capacity
        self._ready = threading.Condition()
        self.dropped = 0  # events lost because this consumer was too slow

    def _put(self, event: dict[str, Any]) -> None:
        with self._ready:
            if len(self._events) >= self._capacity:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._ready.notify()

    def get(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next event, or None when none came within ``timeout_s`` seconds."""
        with self._ready:
            if not self._events and not self._ready.wait_for(lambda: bool(self._events), timeout_s):
                return None
            return self._events.popleft()


class EventPublisher:
    """Fans events out to subscribers; keeps the current state for new ones.

    A new subscriber first receives one ``state`` event: the latest ``state`` fields merged,
    plus ``verdicts`` (every ``verdict`` event given so far) and, once there is one,
    ``certificates`` (every ``certificate`` event), then the live events.
    """

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected >= 1 events, got {capacity}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []
        self._state: dict[str, Any] = {}
        self._verdicts: list[dict[str, Any]] = []
        self._certificates: list[dict[str, Any]] = []
        self.published = 0  # events published so far

    def publish(self, event: dict[str, Any]) -> None:
        """Record ``event`` in the state snapshot and queue it for every subscriber (never blocks)."""
        if "type" not in event:
            raise ValueError(f"event: expected a 'type' field, got keys {sorted(event)}")
        with self._lock:
            if event["type"] == "state":
                self._state.update({k: v for k, v in event.items() if k != "type"})
            elif event["type"] == "verdict":
                self._verdicts.append(event)
            elif event["type"] == "certificate":
                self._certificates.append(event)
            subscribers = list(self._subscribers)
            self.published += 1
        for subscription in subscribers:
            subscription._put(event)

    def snapshot(self) -> dict[str, Any]:
        """The current state (``/api/state`` and a new subscriber's first event)."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        snapshot = {"type": "state", **self._state, "verdicts": list(self._verdicts)}
        if self._certificates:  # only once one was published: a run without certificates keeps its snapshot
            snapshot["certificates"] = list(self._certificates)
        return snapshot

    def subscribe(self) -> Subscription:
        """A new consumer whose first event is :meth:`snapshot`."""
        with self._lock:
            subscription = Subscription(self.capacity, [self._snapshot()])
            self._subscribers.append(subscription)
        return subscription

    def drops(self) -> list[int]:
        """Per current subscriber (in subscription order): events dropped because it was too slow."""
        with self._lock:
            return [s.dropped for s in self._subscribers]

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop queueing events for ``subscription``."""
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
