"""Reference pulse totaliser over a serial line (protocol in docs/INTERFACES.md).

Lines: ``$TOT,<seq>,<pulses>,<volume_l>,<flow_l_h>,<temp_c>*<CK>\\r\\n``, CK =
XOR of the bytes between ``$`` and ``*`` as two hex digits. A reader thread
stamps every line at reception on the session clock and sends it, raw, to the
device log with what it parsed or why it could not. Garbage, partial lines,
checksum errors, sequence gaps, silence and port loss are counted and recorded
as events with ``parsed = null``: none of them ever becomes a volume.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import serial

from meterbench.devices._common import Clock, DeviceError, EventSink, ReaderThread
from meterbench.errors import ConfigError

# The pure line protocol lives in meterbench.protocols (the session reader re-parses with it); re-exported here.
from meterbench.protocols import format_totaliser_line, nmea_checksum, parse_totaliser_line  # noqa: F401

DEFAULT_MAX_FLOW_L_H = 100000.0
"""Default rate-of-change limit: a volume rising faster than this (L/h; 100 m³/h) between two lines is refused."""
RATE_SLACK_S = 0.5
"""Reception-time jitter allowed for in the rate-of-change check (s)."""

MAX_LINE_BYTES = 200
"""A line longer than this without a newline is garbage (the protocol's lines are < 80 bytes)."""


class LineFramer:
    """Split a byte stream into lines (``\\n`` terminated), pyserial ``LineReader`` style.

    ``feed(data)`` returns ``[(line_bytes, complete)]``. A ``$`` in the middle of a
    line starts a new line (the bytes before it are returned as an incomplete
    fragment), so a line cut short by a glitch does not swallow the next one.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """Add received bytes; return the lines (and fragments) they completed."""
        out: list[tuple[bytes, bool]] = []
        for byte in data:
            if byte == 0x24 and self._buffer.strip(b"\r\n"):  # '$' inside a line
                out.append((bytes(self._buffer), False))
                self._buffer.clear()
            self._buffer.append(byte)
            if byte == 0x0A:
                out.append((bytes(self._buffer), True))
                self._buffer.clear()
            elif len(self._buffer) >= self.max_line_bytes:
                out.append((bytes(self._buffer), False))
                self._buffer.clear()
        return out

    def flush(self) -> bytes:
        """Return and drop what is buffered (an unfinished line), e.g. when the port is lost."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


@dataclass
class TotaliserCounts:
    """What the reader saw, by kind (each counted event is also in the device log)."""

    lines: int = 0
    parsed: int = 0
    garbage: int = 0
    partial: int = 0
    checksum: int = 0
    malformed: int = 0
    inconsistent: int = 0
    gaps: int = 0
    lost_lines: int = 0
    silences: int = 0
    disconnects: int = 0
    reconnects: int = 0
    by_error: dict[str, int] = field(default_factory=dict)

    @property
    def bad(self) -> int:
        """Get the number of received lines that gave no value."""
        return self.lines - self.parsed


def _error_kind(error: str) -> str:
    for kind in ("garbage", "partial", "checksum", "malformed"):
        if error.startswith(kind):
            return kind
    return "inconsistent"


class TotaliserReader(ReaderThread):
    """Read a pulse totaliser on a serial port in a thread; record every line.

    ``port`` is anything ``serial.serial_for_url`` opens (``/dev/ttyUSB0``, a pty
    link, ``loop://``). ``sink`` receives each line raw (latin-1 text) with its
    reception time ``clock()`` (s). A line is only ``parsed`` when its framing,
    checksum, fields, volume = pulses × ``pulse_volume_l`` (mandatory: the XOR checksum
    alone misses digit swaps) and the rate of change (no faster than ``max_flow_l_h`` since
    the last good line, pulses never backwards) all check. No complete line for ``silence_s`` (s) is recorded once as
    a silence; a lost port is recorded and reopened every ``reopen_interval_s`` (s).
    """

    def __init__(
        self,
        port: str,
        sink: EventSink,
        clock: Clock,
        *,
        name: str = "ref-meter",
        baudrate: int = 9600,
        silence_s: float = 2.0,
        pulse_volume_l: float,
        max_flow_l_h: float = DEFAULT_MAX_FLOW_L_H,
        reopen_interval_s: float = 0.5,
    ) -> None:
        for key, value in (
            ("silence_s", silence_s),
            ("pulse_volume_l", pulse_volume_l),
            ("max_flow_l_h", max_flow_l_h),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}.{key}: expected a finite number > 0, got {value!r}")
        self.max_flow_l_h = float(max_flow_l_h)
        self.name = name
        self.port = port
        self.baudrate = baudrate
        self.silence_s = silence_s
        self.pulse_volume_l = pulse_volume_l
        self.reopen_interval_s = reopen_interval_s
        super().__init__()
        self.counts = TotaliserCounts()
        self._sink = sink
        self._clock = clock
        self._framer = LineFramer()
        self._serial: serial.SerialBase | None = None
        self._last_line_t_s: float | None = None
        self._silent = False
        self._previous: tuple[float, int] | None = None  # (t_s, pulses) of the last good line

    # -- life cycle -----------------------------------------------------------------
    def start(self, *, open_timeout_s: float = 5.0) -> TotaliserReader:
        """Open the port (waiting up to ``open_timeout_s`` s for it to appear) and start."""
        self._open_with_retry(open_timeout_s)
        self._last_line_t_s = self._clock()
        self._start_thread("serial")
        return self

    # -- bluesky-like device protocol -----------------------------------------------
    def read(self) -> dict[str, dict[str, Any]]:
        """Measure the delivered volume in L, flow in L/h and temperature in °C (last good line)."""
        with self._lock:
            if self.last is None:
                return {}
            t_s = self.last_t_s
            return {
                "ref_volume": {"value": self.last["volume_l"], "timestamp": t_s},
                "ref_flow": {"value": self.last["flow_l_h"], "timestamp": t_s},
                "ref_temperature": {"value": self.last["temperature_c"], "timestamp": t_s},
            }

    def describe(self) -> dict[str, dict[str, Any]]:
        """Describe the fields of ``read()``: source, dtype, shape, units, precision."""
        source = f"serial:{self.port}"
        return {
            "ref_volume": {"source": source, "dtype": "number", "shape": [], "units": "L", "precision": 4},
            "ref_flow": {"source": source, "dtype": "number", "shape": [], "units": "L/h", "precision": 1},
            "ref_temperature": {"source": source, "dtype": "number", "shape": [], "units": "degC", "precision": 2},
        }

    def wait_for_line(self, after_t_s: float, timeout_s: float) -> dict | None:
        """Wait for a good line received after ``after_t_s`` (s); return it or None on timeout."""
        return self.wait_for_reading(after_t_s, timeout_s)

    @property
    def connected(self) -> bool:
        """Get whether the port is open now."""
        return self._serial is not None

    # -- internals --------------------------------------------------------------------
    def _open(self) -> None:
        self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.1)

    def _open_with_retry(self, timeout_s: float) -> None:
        deadline = self._clock() + timeout_s
        while True:
            try:
                self._open()
                return
            except (serial.SerialException, OSError) as exc:
                if self._clock() >= deadline:
                    raise DeviceError(f"{self.name}: cannot open serial port {self.port}: {exc}") from exc
                self._stop.wait(self.reopen_interval_s)

    def _close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._serial is None:
                self._try_reopen()
            else:
                self._read_once()
            self._check_silence()
        rest = self._framer.flush()
        if rest:
            self._handle(self._clock(), rest, complete=False)

    def _read_once(self) -> None:
        assert self._serial is not None
        try:
            data = self._serial.read(1)
            if data and self._serial.in_waiting:
                data += self._serial.read(self._serial.in_waiting)
        except (serial.SerialException, OSError) as exc:
            self._port_lost(str(exc))
            return
        if not data:
            return
        t_s = self._clock()
        for line, complete in self._framer.feed(data):
            self._handle(t_s, line, complete)

    def _port_lost(self, why: str) -> None:
        t_s = self._clock()
        rest = self._framer.flush()
        if rest:
            self._handle(t_s, rest, complete=False)
        self._close()
        self.counts.disconnects += 1
        self._note(t_s, f"port lost: {why}")

    def _try_reopen(self) -> None:
        try:
            self._open()
        except (serial.SerialException, OSError):
            self._stop.wait(self.reopen_interval_s)
            return
        self.counts.reconnects += 1
        self._note(self._clock(), f"port reopened: {self.port}")

    def _check_silence(self) -> None:
        if self._silent or self._last_line_t_s is None:
            return
        t_s = self._clock()
        if t_s - self._last_line_t_s > self.silence_s:
            self._silent = True
            self.counts.silences += 1
            self._note(t_s, f"silence: no line for more than {self.silence_s:g} s")

    def _note(self, t_s: float, error: str) -> None:
        """Record a condition that is not a received line (raw is empty)."""
        self._append(t_s, "", None, error)

    def _handle(self, t_s: float, line: bytes, complete: bool) -> None:
        self.counts.lines += 1
        if complete:
            self._last_line_t_s = t_s
            self._silent = False
        parsed, error = (
            parse_totaliser_line(line)
            if complete
            else (
                None,
                "partial line: " + ("too long, no newline" if len(line) >= MAX_LINE_BYTES else "cut before its end"),
            )
        )
        if parsed is not None:
            error = self._check_consistency(t_s, parsed)
            if error is not None:
                parsed = None
        raw = line.decode("latin-1")
        if parsed is None:
            kind = _error_kind(error or "")
            setattr(self.counts, kind, getattr(self.counts, kind) + 1)
            self.counts.by_error[error or ""] = self.counts.by_error.get(error or "", 0) + 1
            self._append(t_s, raw, None, error)
            return
        self._check_sequence(t_s, parsed["seq"])
        if not self._append(t_s, raw, parsed, None):
            return  # not recorded, so never used
        self.counts.parsed += 1
        self._publish(parsed, t_s)

    def _check_consistency(self, t_s: float, parsed: dict) -> str | None:
        """Why a checksum-valid line is still not a reading, or None; remembers the last good line."""
        expected = round(parsed["pulses"] * self.pulse_volume_l, 4)
        if abs(parsed["volume_l"] - expected) > 1e-4 + 1e-9 * expected:
            return f"inconsistent: volume_l {parsed['volume_l']:.4f} != pulses × pulse_volume_l = {expected:.4f}"
        if self._previous is not None:
            previous_t_s, previous_pulses = self._previous
            if parsed["pulses"] < previous_pulses:
                return f"inconsistent: pulses went backwards ({previous_pulses} -> {parsed['pulses']})"
            rise_l = (parsed["pulses"] - previous_pulses) * self.pulse_volume_l
            limit_l = self.max_flow_l_h / 3600.0 * (max(t_s - previous_t_s, 0.0) + RATE_SLACK_S)
            if rise_l > limit_l:
                return (
                    f"inconsistent: volume rose {rise_l:.4f} L in {t_s - previous_t_s:.3f} s, faster than "
                    f"max_flow_l_h = {self.max_flow_l_h:g}"
                )
        self._previous = (t_s, parsed["pulses"])
        return None

    def _check_sequence(self, t_s: float, seq: int) -> None:
        if self.last is None:
            return
        expected = self.last["seq"] + 1
        if seq == expected:
            return
        self.counts.gaps += 1
        if seq > expected:
            self.counts.lost_lines += seq - expected
            self._note(t_s, f"sequence gap: expected {expected}, got {seq} ({seq - expected} lines lost)")
        else:
            self._note(t_s, f"sequence gap: expected {expected}, got {seq} (device restarted?)")
