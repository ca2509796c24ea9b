"""Reading one accelerometer trace of an impact bench: a CSV or an NI TDMS file, in g or in V.

CSV (DESIGN.md "Helmet impact"): a header line, then one sample per line. Columns, in order:
an optional ``time_s`` (s, uniform) or ``sample`` (index), then ``accel_g`` or ``ax_g,ay_g,az_g``
(or ``accel_v`` / ``ax_v,ay_v,az_v`` in V, with a sensitivity in mV/g). The sample rate comes from
``fs_hz`` or, when absent, from ``time_s`` (checked uniform).

TDMS (npTDMS, the ``[helmet]`` extra): channels named as the CSV columns in any group, or else a
file holding exactly one or three channels (taken in order). Units from the channel's
``unit_string`` property (``g`` or ``V``) when the name does not say; sample rate from
``wf_increment`` when ``fs_hz`` is not given.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meterbench.errors import MeterbenchError
from meterbench.session.writer import write_text_atomic

__all__ = ["Trace", "TraceError", "parse_trace", "read_trace", "trace_csv_text", "write_trace_csv"]

_AXES = ("ax", "ay", "az")
_UNIFORM_REL_TOL = 0.01
"""Time steps may differ from their median by 1 % (CSV rounding); more is a non-uniform trace."""
_RATE_REL_TOL = 0.001
"""A given fs_hz and the time column's rate must agree within 0.1 %."""
EXPECTED_COLUMNS = (
    "a header line with columns accel_g, or time_s,accel_g, or time_s,ax_g,ay_g,az_g "
    "(time_s may be sample or absent; _v instead of _g for volts with a sensitivity)"
)


class TraceError(MeterbenchError, ValueError):
    """A trace file cannot be used (the message names the file and what was expected)."""


@dataclass(frozen=True, eq=False)
class Trace:
    """One impact trace: accel_g (N,) or (N, 3) in g, its sample rate, its recorded units, its file."""

    accel_g: np.ndarray
    fs_hz: float
    units: str  # "g" or "V": what the file held (V converted with sensitivity_mv_per_g)
    source: str
    sensitivity_mv_per_g: float | None = None

    @property
    def axes(self) -> int:
        """1 for a single channel, 3 for a tri-axial trace."""
        return 1 if self.accel_g.ndim == 1 else self.accel_g.shape[1]


def read_trace(path: str | Path, fs_hz: float | None = None, sensitivity_mv_per_g: float | None = None) -> Trace:
    """Read a CSV (``.csv``/``.txt``) or TDMS (``.tdms``) trace in g (V converted with the sensitivity)."""
    path = Path(path)
    _check_parameters(path, fs_hz, sensitivity_mv_per_g)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_trace(data, path, fs_hz, sensitivity_mv_per_g)


def parse_trace(
    data: bytes, path: str | Path, fs_hz: float | None = None, sensitivity_mv_per_g: float | None = None
) -> Trace:
    """A trace from the bytes of its file (``path`` names it in messages; ``.tdms`` is TDMS, else CSV):
    a session hashes these very bytes before they are parsed, so no other file can be swapped in."""
    path = Path(path)
    _check_parameters(path, fs_hz, sensitivity_mv_per_g)
    if path.suffix.lower() == ".tdms":
        columns, values, increment_s = _read_tdms(path, data)
    else:
        columns, values = _read_csv(path, data)
        increment_s = None
    return _assemble(path, columns, values, fs_hz, increment_s, sensitivity_mv_per_g)


def _check_parameters(path: Path, fs_hz: float | None, sensitivity_mv_per_g: float | None) -> None:
    if fs_hz is not None and not (math.isfinite(float(fs_hz)) and float(fs_hz) > 0):
        raise TraceError(f"{path}: expected a positive sample rate in Hz, got fs {fs_hz!r}")
    if sensitivity_mv_per_g is not None and not (
        math.isfinite(float(sensitivity_mv_per_g)) and float(sensitivity_mv_per_g) > 0
    ):
        raise TraceError(f"{path}: expected a positive sensitivity in mV/g, got {sensitivity_mv_per_g!r}")


def _read_csv(path: Path, data: bytes) -> tuple[list[str], np.ndarray]:
    try:
        lines = [line for line in data.decode("utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: cannot read the trace as UTF-8 text ({exc})") from None
    if not lines:
        raise TraceError(f"{path}: empty file; expected {EXPECTED_COLUMNS}")
    columns = [name.strip().lower() for name in lines[0].split(",")]
    if not all(name and not _is_number(name) for name in columns):
        raise TraceError(f"{path}: no header line (got {lines[0][:60]!r}); expected {EXPECTED_COLUMNS}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(columns):
            raise TraceError(f"{path}: line {number}: expected {len(columns)} comma-separated values, got {len(cells)}")
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError:
            raise TraceError(f"{path}: line {number}: expected numbers, got {line[:60]!r}") from None
    return columns, np.array(rows, dtype=float).reshape(len(rows), len(columns))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_tdms(path: Path, data: bytes) -> tuple[list[str], np.ndarray, float | None]:
    try:
        from nptdms import TdmsFile
    except ImportError:
        raise TraceError(f"{path}: reading TDMS needs npTDMS (pip install 'meterbench[helmet]')") from None
    try:
        channels = [channel for group in TdmsFile.read(io.BytesIO(data)).groups() for channel in group.channels()]
    except Exception as exc:  # npTDMS raises ValueError/KeyError/struct.error on a damaged file
        raise TraceError(f"{path}: not a readable TDMS file ({type(exc).__name__}: {exc})") from None
    channels = [channel for channel in channels if len(channel) > 0]
    by_name = {channel.name.strip().lower(): channel for channel in channels}
    for unit in ("g", "v"):
        wanted = [f"accel_{unit}"] if f"accel_{unit}" in by_name else [f"{axis}_{unit}" for axis in _AXES]
        if all(name in by_name for name in wanted):
            chosen, names = [by_name[name] for name in wanted], wanted
            break
    else:
        if len(channels) not in (1, 3):
            raise TraceError(
                f"{path}: expected TDMS channels named accel_g or ax_g,ay_g,az_g (or _v), or exactly 1 or 3 "
                f"channels, found {len(channels)}: {', '.join(c.name for c in channels)[:120]}"
            )
        chosen = channels
        units = {str(channel.properties.get("unit_string", "")).strip().lower() for channel in chosen}
        if len(units) != 1 or not units <= {"g", "v"}:
            raise TraceError(
                f"{path}: TDMS channels {', '.join(c.name for c in chosen)}: expected unit_string g or V, "
                f"got {sorted(units)}"
            )
        unit = units.pop()
        names = [f"accel_{unit}"] if len(chosen) == 1 else [f"{axis}_{unit}" for axis in _AXES]
    lengths = {len(channel) for channel in chosen}
    if len(lengths) != 1:
        raise TraceError(f"{path}: TDMS channels {', '.join(names)} have different lengths {sorted(lengths)}")
    increments = {channel.properties.get("wf_increment") for channel in chosen} - {None}
    increment_s = float(increments.pop()) if len(increments) == 1 else None
    values = np.column_stack([np.asarray(channel[:], dtype=float) for channel in chosen])
    return names, values, increment_s


def _assemble(
    path: Path,
    columns: list[str],
    values: np.ndarray,
    fs_hz: float | None,
    increment_s: float | None,
    sensitivity_mv_per_g: float | None,
) -> Trace:
    index = columns[0] if columns and columns[0] in ("time_s", "sample") else None
    data_columns = columns[1:] if index else columns
    for unit in ("g", "v"):
        if data_columns in ([f"accel_{unit}"], [f"{axis}_{unit}" for axis in _AXES]):
            break
    else:
        raise TraceError(f"{path}: columns {','.join(columns)}; expected {EXPECTED_COLUMNS}")
    if values.shape[0] < 3:
        raise TraceError(f"{path}: expected at least 3 samples, got {values.shape[0]}")
    if not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.all(np.isfinite(values), axis=1))[0])
        raise TraceError(f"{path}: sample {row + 1}: expected finite numbers, found NaN or infinity")
    accel = values[:, 1:] if index else values
    if unit == "v":
        if sensitivity_mv_per_g is None:
            raise TraceError(f"{path}: columns in V: expected a sensitivity in mV/g (--sensitivity)")
        accel = accel * (1000.0 / float(sensitivity_mv_per_g))
    elif sensitivity_mv_per_g is not None:
        raise TraceError(f"{path}: columns already in g: a sensitivity applies to columns in V (*_v) only")
    rate = _sample_rate(path, values[:, 0] if index == "time_s" else None, fs_hz, increment_s)
    return Trace(
        accel_g=accel[:, 0].copy() if accel.shape[1] == 1 else accel.copy(),
        fs_hz=rate,
        units="V" if unit == "v" else "g",
        source=str(path),
        sensitivity_mv_per_g=None if sensitivity_mv_per_g is None else float(sensitivity_mv_per_g),
    )


def _sample_rate(path: Path, time_s: np.ndarray | None, fs_hz: float | None, increment_s: float | None) -> float:
    derived = None
    if time_s is not None:
        steps = np.diff(time_s)
        step = float(np.median(steps))
        if step <= 0:
            raise TraceError(f"{path}: time_s: expected increasing times")
        worst = int(np.argmax(np.abs(steps - step)))
        if abs(steps[worst] - step) > _UNIFORM_REL_TOL * step:
            raise TraceError(
                f"{path}: time_s: expected uniform sampling (step {step:.6g} s), "
                f"got a step of {steps[worst]:.6g} s after sample {worst + 1}"
            )
        derived = 1.0 / float((time_s[-1] - time_s[0]) / (len(time_s) - 1))
    elif increment_s is not None and increment_s > 0:
        derived = 1.0 / increment_s
    if fs_hz is None:
        if derived is None:
            raise TraceError(f"{path}: no time_s column: expected the sample rate (--fs HZ)")
        return derived
    if derived is not None and abs(derived - float(fs_hz)) > _RATE_REL_TOL * float(fs_hz):
        raise TraceError(f"{path}: the file's sample rate {derived:.6g} Hz disagrees with fs {float(fs_hz):g} Hz")
    return float(fs_hz)


def write_trace_csv(path: str | Path, accel: np.ndarray, fs_hz: float, units: str = "g") -> None:
    """Write a trace as :func:`read_trace` reads it: ``time_s`` then ``accel_<u>`` or ``ax_<u>,ay_<u>,az_<u>``.

    ``accel`` is (N,) or (N, 3) in ``units`` ("g" or "V"); values are written exactly (repr), the
    file atomically (never a half-written trace).
    """
    write_text_atomic(Path(path), trace_csv_text(path, accel, fs_hz, units))


def trace_csv_text(path: str | Path, accel: np.ndarray, fs_hz: float, units: str = "g") -> str:
    """The CSV text of a trace (see :func:`write_trace_csv`); ``path`` names it in messages."""
    values = np.asarray(accel, dtype=float)
    unit = {"g": "g", "V": "v"}.get(units)
    if unit is None or values.ndim not in (1, 2) or (values.ndim == 2 and values.shape[1] != 3):
        raise TraceError(
            f"{path}: expected (N,) or (N, 3) samples in g or V, got shape {values.shape}, units {units!r}"
        )
    if not np.all(np.isfinite(values)) or not (math.isfinite(float(fs_hz)) and float(fs_hz) > 0):
        raise TraceError(f"{path}: expected finite samples and a positive sample rate, got fs {fs_hz!r}")
    columns = [f"accel_{unit}"] if values.ndim == 1 else [f"{axis}_{unit}" for axis in _AXES]
    rows = values.reshape(len(values), -1)
    lines = [",".join(["time_s", *columns])]
    lines += [",".join([f"{i / float(fs_hz):.12g}", *map(repr, map(float, row))]) for i, row in enumerate(rows)]
    return "\n".join(lines) + "\n"
