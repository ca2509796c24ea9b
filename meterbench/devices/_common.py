"""Pieces shared by the live device drivers: clock, event sink, status, errors.

The drivers never write files themselves: every raw line or message goes to an
``EventSink`` (in a session, the recorder's device log), stamped with the time
of reception on the session clock (s since the session start, monotonic).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from meterbench.errors import DeviceError, DeviceTimeoutError

__all__ = ["Clock", "DeviceError", "DeviceTimeoutError", "EventSink", "ReaderThread", "Status", "monotonic_clock"]

Clock = Callable[[], float]
"""A function giving the session time ``t_s`` in s (monotonic)."""


class EventSink(Protocol):
    """Where a driver puts each raw event (the recorder's ``DeviceLog`` satisfies this)."""

    def append(
        self,
        t_s: float,
        raw: str | bytes,
        parsed: dict | None = None,
        error: str | None = None,
        topic: str | None = None,
    ) -> int:
        """Append one event line: reception time (s), raw text/bytes, parsed value or error."""


def monotonic_clock(start: float | None = None) -> Clock:
    """Make a session clock: s since ``start`` (a ``time.monotonic()`` value, default now)."""
    origin = time.monotonic() if start is None else start
    return lambda: time.monotonic() - origin


class Status:
    """Completion of a command (``set()``), bluesky/ophyd style: wait with a timeout.

    ``finish()`` marks success, ``fail(reason)`` failure; ``wait(timeout_s)``
    returns when done and raises ``DeviceTimeoutError`` or ``DeviceError``.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._done = threading.Event()
        self.error: str | None = None

    @property
    def done(self) -> bool:
        """Get whether the command finished (successfully or not)."""
        return self._done.is_set()

    @property
    def success(self) -> bool:
        """Get whether the command finished without error."""
        return self._done.is_set() and self.error is None

    def finish(self) -> None:
        """Mark the command as confirmed."""
        self._done.set()

    def fail(self, reason: str) -> None:
        """Mark the command as failed with a one-line reason."""
        self.error = reason
        self._done.set()

    def wait(self, timeout_s: float) -> None:
        """Block until done; raise if it failed or took longer than ``timeout_s`` (s)."""
        if not self._done.wait(timeout_s):
            raise DeviceTimeoutError(f"{self.what}: not confirmed within {timeout_s:g} s")
        if self.error is not None:
            raise DeviceError(f"{self.what}: {self.error}")


class ReaderThread:
    """Life cycle shared by the reference-meter readers: a daemon thread, the last good reading.

    A subclass sets ``name`` and implements ``_run()`` (loop until ``self._stop`` is set) and
    ``_close()`` (release the port); it records each event with ``_append`` (an event the sink
    cannot store, e.g. on a full disk, is counted in ``unrecorded`` and must not be used) and
    publishes each good reading with ``_publish``. The last ``HISTORY`` good readings are kept
    with their reception times (``history``), so a latch naming a reading's ``seq`` can be
    checked against the reading itself.
    """

    HISTORY = 6000
    """Good readings kept in ``history`` (10 min of a 10 Hz totaliser)."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self.last: dict | None = None
        self.last_t_s: float | None = None
        self.unrecorded = 0
        self.history: deque[tuple[float, dict]] = deque(maxlen=self.HISTORY)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = lock or threading.Lock()
        self._new_reading = threading.Condition(self._lock)

    def _start_thread(self, kind: str) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{kind}-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the reader thread and close the port (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _append(self, t_s: float, raw: str | bytes, parsed: dict | None, error: str | None) -> bool:
        """Record one event in the sink; False (counted in ``unrecorded``) when the sink could not store it."""
        try:
            self._sink.append(t_s, raw, parsed, error)
        except OSError:  # disk full: nothing recorded; the bench sees the recorder's failure and stops
            self.unrecorded += 1
            return False
        return True

    def _publish(self, reading: dict, t_s: float) -> None:
        """Make ``reading`` (received at ``t_s`` s) the last good one and wake the waiters."""
        with self._new_reading:
            self.last, self.last_t_s = reading, t_s
            self.history.append((t_s, reading))
            self._new_reading.notify_all()

    def reading_with_seq(self, seq: int) -> tuple[float, dict] | None:
        """The latest good reading whose own ``seq`` is ``seq``, with its reception time (s); None if not kept."""
        with self._lock:
            for t_s, reading in reversed(self.history):
                if reading.get("seq") == seq:
                    return t_s, dict(reading)
        return None

    def readings_between(self, start_t_s: float, stop_t_s: float) -> list[tuple[float, dict]]:
        """The good readings received in [start_t_s, stop_t_s] (s), oldest first."""
        with self._lock:
            return [(t, dict(r)) for t, r in self.history if start_t_s <= t <= stop_t_s]

    def wait_for_reading(self, after_t_s: float, timeout_s: float) -> dict | None:
        """Wait for a good reading received after ``after_t_s`` (s); return it or None on timeout."""
        with self._new_reading:
            self._new_reading.wait_for(lambda: self.last_t_s is not None and self.last_t_s > after_t_s, timeout_s)
            if self.last_t_s is not None and self.last_t_s > after_t_s:
                return dict(self.last or {})
            return None
