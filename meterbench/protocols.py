"""The bench's wire protocols as pure functions (standard library only): the serial pulse
totaliser's ``$TOT`` lines, the MQTT controller's JSON payloads, Modbus RTU checksums, and the
strict JSON decoding that every recorded or received JSON text goes through.

The live drivers (``meterbench.devices``) parse with these functions as the bytes arrive; the
session reader (``meterbench.session``) parses a recorded ``raw`` again with the same functions
and refuses a line whose recorded ``parsed`` says something else. Protocol details:
docs/INTERFACES.md.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

__all__ = [
    "is_number",
    "EVENTS",
    "MAX_INTEGER_DIGITS",
    "MAX_PAYLOAD_BYTES",
    "MAX_SEQ",
    "MAX_SEQ_JUMP",
    "MAX_MISSING_SEQ",
    "PLAUSIBLE_RANGES",
    "TELEMETRY_KEYS",
    "VALVES",
    "VALVE_STATES",
    "check_crc",
    "crc16_modbus",
    "decode_payload",
    "format_totaliser_line",
    "nmea_checksum",
    "parse_event",
    "parse_telemetry",
    "parse_totaliser_line",
    "strict_json_loads",
    "with_crc",
]

# ---------------------------------------------------------------- strict JSON

VALVES = ("inlet", "outlet", "bypass")
VALVE_STATES = ("open", "closed")
EVENTS = (
    "point_start",
    "point_stop",
    "flow_set",
    "flow_stable",
    "sequence_start",
    "sequence_end",
    "valve_set",
    "fault",
)
TELEMETRY_KEYS = ("flow_m3h", "temperature_c", "pressure_kpa", "valves")

MAX_PAYLOAD_BYTES = 16384
"""A controller message is < 1 kB; a longer payload is refused (its first bytes are recorded)."""
MAX_SEQ = 2**53
"""Largest ``seq`` accepted (exact in a JSON double)."""
MAX_SEQ_JUMP = 1000
"""A ``seq`` more than this beyond the last one is refused as implausible (not a gap to wait for)."""
MAX_MISSING_SEQ = 10000
"""At most this many missing ``seq`` numbers are remembered per topic (the oldest are dropped)."""
MAX_INTEGER_DIGITS = 18
"""Integers with more digits are refused while decoding (a 5,000-digit number must not cost anything)."""
PLAUSIBLE_RANGES = {
    "flow_m3h": (0.0, 1000.0),  # m³/h: a water-meter bench up to DN300
    "temperature_c": (0.0, 100.0),  # °C: liquid water
    "pressure_kpa": (0.0, 10000.0),  # kPa: up to 100 bar
}
"""Telemetry values outside these ranges are refused (the message is recorded with the error)."""


def _refuse_big_integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is too large for a float")
    return value


def strict_json_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses, with a ValueError, what a number or a nesting can be abused for:
    NaN and Infinity, numbers that overflow a float (1e400), integers of more than
    ``MAX_INTEGER_DIGITS`` digits (a 5,000-digit integer costs quadratic time) and nesting deeper
    than Python's recursion limit (RecursionError becomes ValueError)."""
    try:
        return json.loads(
            text, parse_int=_refuse_big_integer, parse_float=_finite_float, parse_constant=_refuse_constant
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def is_number(value: Any) -> bool:
    """True for a finite int or float that is not a bool (a usable number from a log line or a file)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- serial pulse totaliser

_LINE_RE = re.compile(rb"\$(TOT,(\d{1,10}),(\d{1,15}),(\d+\.\d{4}),(-?\d+\.\d),(-?\d+\.\d{2}))\*([0-9A-Fa-f]{2})")


def nmea_checksum(body: bytes) -> int:
    """XOR of all bytes of ``body`` (the text between ``$`` and ``*``)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def format_totaliser_line(seq: int, pulses: int, volume_l: float, flow_l_h: float, temperature_c: float) -> bytes:
    """Build one protocol line, with checksum and CRLF (volume L, flow L/h, temperature °C)."""
    body = f"TOT,{seq},{pulses},{volume_l:.4f},{flow_l_h:.1f},{temperature_c:.2f}".encode()
    return b"$" + body + b"*%02X\r\n" % nmea_checksum(body)


def parse_totaliser_line(line: bytes) -> tuple[dict | None, str | None]:
    """Parse one line (with or without CRLF) into ``(parsed, None)`` or ``(None, error)``.

    ``parsed`` = ``{"seq", "pulses", "volume_l", "flow_l_h", "temperature_c"}``.
    """
    text = line.rstrip(b"\r\n")
    if not text:
        return None, "empty line"
    if not text.startswith(b"$"):
        return None, "partial line: no '$' at start" if b"*" in text else "garbage: no '$' at start"
    if b"*" not in text:
        return None, "partial line: no '*<checksum>'"
    match = _LINE_RE.fullmatch(text)
    if match is None:
        if not text.startswith(b"$TOT,"):
            return None, "garbage: not a $TOT sentence"
        return None, "malformed $TOT fields"
    body, seq, pulses, volume, flow, temp, checksum = match.groups()
    expected = nmea_checksum(body)
    if int(checksum, 16) != expected:
        return None, f"checksum mismatch: line says {checksum.decode()}, computed {expected:02X}"
    return {
        "seq": int(seq),
        "pulses": int(pulses),
        "volume_l": float(volume),
        "flow_l_h": float(flow),
        "temperature_c": float(temp),
    }, None


# ---------------------------------------------------------------- MQTT controller payloads


def decode_payload(payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> tuple[Any, str | None]:
    """Decode a JSON payload safely: ``(value, None)`` or ``(None, why not)``; never raises.

    Refuses payloads over ``max_bytes``, non-UTF-8 text and what :func:`strict_json_loads` refuses.
    """
    if len(payload) > max_bytes:
        return None, f"payload of {len(payload)} bytes > {max_bytes} bytes: refused"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None, "payload is not UTF-8 text"
    try:
        return strict_json_loads(text), None
    except ValueError as exc:  # JSONDecodeError included
        return None, f"payload is not JSON: {str(exc)[:80]}"


def parse_telemetry(payload: Any) -> tuple[dict | None, str | None]:
    """Check a telemetry payload: numeric flow/temperature/pressure, valve states."""
    if not isinstance(payload, dict):
        return None, "telemetry payload is not a JSON object"
    missing = [k for k in TELEMETRY_KEYS if k not in payload]
    if missing:
        return None, f"telemetry missing {missing}"
    for key, (low, high) in PLAUSIBLE_RANGES.items():
        value = payload[key]
        if not is_number(value):
            return None, f"telemetry {key} is not a finite number: {str(value)[:40]!r}"
        if not low <= value <= high:
            return None, f"telemetry {key} = {value:g} outside the plausible range [{low:g}, {high:g}]"
    valves = payload["valves"]
    if not isinstance(valves, dict) or any(v not in VALVE_STATES for v in valves.values()):
        return None, f"telemetry valves must map names to 'open'/'closed': {str(valves)[:60]!r}"
    return payload, None


def parse_event(payload: Any) -> tuple[dict | None, str | None]:
    """Check an event payload: ``event`` is a known name; latches carry reference_volume_l."""
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        return None, "event payload is not a JSON object with an 'event' string"
    if payload["event"] not in EVENTS:
        return None, f"unknown event {payload['event']!r}, expected one of {list(EVENTS)}"
    if payload["event"] in ("point_start", "point_stop"):
        volume = payload.get("reference_volume_l")
        if not is_number(volume) or volume < 0:
            return None, f"{payload['event']} without a finite reference_volume_l >= 0"
        if not isinstance(payload.get("point"), str):
            return None, f"{payload['event']} without a point name (string)"
    for key in ("cmd_id", "reference_seq"):
        value = payload.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_SEQ):
            return None, f"{key} must be an integer in [0, 2^53), got {str(value)[:40]!r}"
    return payload, None


# ---------------------------------------------------------------- Modbus RTU


def crc16_modbus(data: bytes) -> int:
    """CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF) of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(pdu: bytes) -> bytes:
    """Append the CRC, low byte first, as RTU frames carry it."""
    return pdu + struct.pack("<H", crc16_modbus(pdu))


def check_crc(frame: bytes) -> bool:
    """Tell whether the last two bytes of ``frame`` are the CRC of the rest."""
    return len(frame) >= 4 and struct.unpack("<H", frame[-2:])[0] == crc16_modbus(frame[:-2])
