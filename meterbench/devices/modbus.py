"""Modbus RTU flow computer: totaliser registers read over a serial line.

Own framing (function 0x03/0x04 and CRC-16/Modbus are ~100 lines; pymodbus is
not installed on bench PCs and its async stack hides the raw bytes we must
record). Each poll is one request/response exchange; the response bytes go to
the device log as hex with what they decoded to, or why not (CRC error,
timeout, exception response). A bad exchange never becomes a volume.

``ModbusSlave`` is the other end: a register map served over a serial port,
used by the tests and the live bench simulator.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import serial

from meterbench.devices._common import Clock, DeviceError, EventSink, ReaderThread

# CRC-16/Modbus lives in meterbench.protocols (the session reader checks recorded frames with it); re-exported.
from meterbench.protocols import check_crc, crc16_modbus, with_crc  # noqa: F401

READ_HOLDING = 0x03
READ_INPUT = 0x04
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    6: "slave device busy",
}


class ModbusError(DeviceError):
    """A Modbus exchange failed (CRC, timeout, exception response, malformed frame)."""


def read_request(slave: int, function: int, address: int, count: int) -> bytes:
    """Build a read-registers request (function 0x03 holding or 0x04 input) with CRC."""
    if function not in (READ_HOLDING, READ_INPUT):
        raise ValueError(f"function must be 0x03 or 0x04, got {function:#04x}")
    if not 1 <= slave <= 247:
        raise ValueError(f"slave must be in 1..247, got {slave}")
    if not 1 <= count <= 125:
        raise ValueError(f"count must be in 1..125 registers, got {count}")
    return with_crc(struct.pack(">BBHH", slave, function, address, count))


def parse_read_response(frame: bytes, slave: int, function: int, count: int) -> list[int]:
    """Decode a read-registers response into ``count`` 16-bit registers or raise ModbusError."""
    if len(frame) < 5:
        raise ModbusError(f"short frame: {len(frame)} bytes")
    if not check_crc(frame):
        raise ModbusError("CRC mismatch")
    if frame[0] != slave:
        raise ModbusError(f"answer from slave {frame[0]}, expected {slave}")
    if frame[1] == function | 0x80:
        code = frame[2]
        raise ModbusError(f"exception response {code}: {EXCEPTION_NAMES.get(code, 'unknown')}")
    if frame[1] != function or frame[2] != 2 * count or len(frame) != 5 + 2 * count:
        raise ModbusError(f"malformed response to function {function:#04x} for {count} registers")
    return list(struct.unpack(f">{count}H", frame[3:-2]))


def decode_value(registers: list[int], kind: str, word_order: str = "big") -> float:
    """Decode two registers as ``kind`` "float32" or "uint32"; word_order "big" (ABCD) or
    "little" (CDAB, high word last)."""
    if len(registers) != 2:
        raise ValueError(f"a 32-bit value needs 2 registers, got {len(registers)}")
    high, low = registers if word_order == "big" else registers[::-1]
    raw = struct.pack(">HH", high, low)
    if kind == "float32":
        return struct.unpack(">f", raw)[0]
    if kind == "uint32":
        return float(struct.unpack(">I", raw)[0])
    raise ValueError(f"register kind must be 'float32' or 'uint32', got {kind!r}")


def encode_value(value: float, kind: str, word_order: str = "big") -> list[int]:
    """Encode ``value`` into two registers (inverse of ``decode_value``)."""
    raw = struct.pack(">f", value) if kind == "float32" else struct.pack(">I", int(value))
    registers = list(struct.unpack(">HH", raw))
    return registers if word_order == "big" else registers[::-1]


@dataclass(frozen=True)
class RegisterField:
    """One 32-bit quantity of the flow computer: name, first register, kind, scale to the unit."""

    name: str
    address: int
    kind: str = "float32"
    scale: float = 1.0
    units: str = "L"


@dataclass
class ModbusCounts:
    """Exchanges by outcome (each also recorded in the device log)."""

    polls: int = 0
    ok: int = 0
    crc_errors: int = 0
    timeouts: int = 0
    exceptions: int = 0
    malformed: int = 0
    port_errors: int = 0
    by_error: dict[str, int] = field(default_factory=dict)


def _transact(port: serial.SerialBase, request: bytes) -> bytes:
    """Send ``request`` and read one response frame (b"" or partial when the slave is silent)."""
    port.reset_input_buffer()
    port.write(request)
    head = port.read(3)
    if len(head) < 3:
        return head
    length = 5 if head[1] & 0x80 else 5 + head[2]
    return head + port.read(length - 3)


class ModbusTotaliserReader(ReaderThread):
    """Poll a flow computer's totaliser registers every ``interval_s`` (s) in a thread.

    Each field (``RegisterField``) is a 32-bit float or unsigned integer times
    ``scale`` (e.g. 0.001 for a register in mL). All fields are read in one
    request spanning their registers; the response is recorded as hex with the
    decoded values, or the error. ``timeout_s`` (s) bounds one exchange.
    """

    def __init__(
        self,
        port: str,
        sink: EventSink,
        clock: Clock,
        fields: list[RegisterField],
        *,
        name: str = "flow-computer",
        slave: int = 1,
        function: int = READ_INPUT,
        baudrate: int = 19200,
        interval_s: float = 0.2,
        timeout_s: float = 0.2,
        word_order: str = "big",
    ) -> None:
        if not fields:
            raise ValueError("fields: at least one register field is needed")
        self.name = name
        self.port = port
        self.fields = fields
        self.slave = slave
        self.function = function
        self.baudrate = baudrate
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.word_order = word_order
        super().__init__()
        self.counts = ModbusCounts()
        self._first = min(f.address for f in fields)
        self._count = max(f.address for f in fields) + 2 - self._first
        self._request = read_request(slave, function, self._first, self._count)
        self._sink = sink
        self._clock = clock
        self._serial: serial.SerialBase | None = None

    def open(self) -> ModbusTotaliserReader:
        """Open the port (``poll()`` may then be called by hand)."""
        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self.timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.name}: cannot open serial port {self.port}: {exc}") from exc
        return self

    def start(self) -> ModbusTotaliserReader:
        """Open the port and start polling every ``interval_s``."""
        self.open()
        self._start_thread("modbus")
        return self

    def _close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def read(self) -> dict[str, dict[str, Any]]:
        """Measure each field (e.g. the delivered volume in L) from the last good poll."""
        if self.last is None:
            return {}
        return {k: {"value": v, "timestamp": self.last_t_s} for k, v in self.last.items()}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Describe the fields of ``read()``: source, dtype, shape, units."""
        return {
            f.name: {
                "source": f"modbus:{self.port}:{self.slave}:{f.address}",
                "dtype": "number",
                "shape": [],
                "units": f.units,
            }
            for f in self.fields
        }

    def poll(self) -> dict[str, float] | None:
        """Do one exchange now; record it; return the decoded fields or None."""
        if self._serial is None:
            raise DeviceError(f"{self.name}: port not open; call open() or start() first")
        self.counts.polls += 1
        try:
            response = _transact(self._serial, self._request)
        except (serial.SerialException, OSError) as exc:
            self._record(self._clock(), b"", None, f"port error: {exc}", "port_errors")
            return None
        t_s = self._clock()
        if not response:
            self._record(t_s, response, None, f"timeout: no answer in {self.timeout_s:g} s", "timeouts")
            return None
        try:
            registers = parse_read_response(response, self.slave, self.function, self._count)
        except ModbusError as exc:
            message = str(exc)
            kind = (
                "crc_errors"
                if message.startswith("CRC")
                else "exceptions"
                if message.startswith("exception")
                else "malformed"
            )
            if len(response) < 5 and kind == "malformed":
                kind, message = "timeouts", f"timeout: {len(response)} bytes then silence"
            self._record(t_s, response, None, message, kind)
            return None
        values = {
            f.name: decode_value(
                registers[f.address - self._first : f.address - self._first + 2], f.kind, self.word_order
            )
            * f.scale
            for f in self.fields
        }
        not_finite = sorted(name for name, value in values.items() if not math.isfinite(value))
        if not_finite:  # a valid CRC over a NaN/inf float is still no reading
            self._record(t_s, response, None, f"malformed: {', '.join(not_finite)} not a finite number", "malformed")
            return None
        if not self._record(t_s, response, values, None, "ok"):
            return None  # not recorded, so never used
        self._publish(values, t_s)
        return values

    def _record(self, t_s: float, response: bytes, parsed: dict | None, error: str | None, kind: str) -> bool:
        setattr(self.counts, kind, getattr(self.counts, kind) + 1)
        if error is not None:
            self.counts.by_error[error] = self.counts.by_error.get(error, 0) + 1
        return self._append(t_s, response.hex(" "), parsed, error)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)
