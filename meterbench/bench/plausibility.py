"""Checks of what the bench controller says against what the bench's own reference meter says.

The reference totaliser (serial, local to the bench PC) is the trusted source; MQTT messages
can come from any client on the broker. :class:`Plausibility` is installed as a check on the
:class:`~meterbench.devices.mqtt.BenchController` (``add_check``): telemetry whose temperature
differs from the reference's own by more than ``TEMPERATURE_TOLERANCE_C``, or whose flow lies
outside the reference's recent flow by more than ``FLOW_TOLERANCE_PCT`` (+ ``FLOW_TOLERANCE_L_H``),
is refused (recorded raw with the reason, never used); the flow is compared only while the
reference flow is steady (its range within ``FLOW_TOLERANCE_PCT``: during a set-point ramp the
telemetry can be ahead of the last totaliser line received). Every refusal is remembered with its
time, so the engine can mark a test point during which they were sustained.

:func:`check_latch` checks a flying start/stop answer against the totaliser line it names
(``reference_seq``) or, when it names none, against the totaliser readings between the command
and the answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from meterbench.devices.serial_totaliser import TotaliserReader

__all__ = [
    "FLOW_TOLERANCE_L_H",
    "FLOW_TOLERANCE_PCT",
    "LATCH_TOLERANCE_L",
    "SUSTAINED_REFUSALS",
    "TEMPERATURE_TOLERANCE_C",
    "Latch",
    "Plausibility",
    "check_latch",
]

TEMPERATURE_TOLERANCE_C = 2.0
"""Telemetry temperature may differ from the reference meter's by this much (°C)."""
FLOW_TOLERANCE_PCT = 10.0
"""Telemetry flow may lie this far (%) outside the reference's flow range of the last ``WINDOW_S``."""
FLOW_TOLERANCE_L_H = 2.0
"""... plus this much (L/h), for flows near zero."""
WINDOW_S = 2.0
"""Reference readings of the last ``WINDOW_S`` s (reception time) are compared (s)."""
SUSTAINED_REFUSALS = 3
"""This many refused telemetry messages within one test point (1.5 s at 2 Hz) mark the point."""
LATCH_TOLERANCE_L = 0.00015
"""A latched reference volume must equal its totaliser line's to the line's resolution (0.1 mL) (L)."""
L_PER_M3 = 1000.0


@dataclass
class Plausibility:
    """Telemetry checks against ``reference`` (a reader with ``readings_between`` and a clock ``now_s``)."""

    reference: Any
    now_s: Any
    refusals: list[tuple[float, str, str]] = field(default_factory=list)  # (t_s, quantity, reason)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, kind: str, payload: dict) -> str | None:
        """The BenchController check: why this telemetry is implausible, or None (events pass)."""
        if kind != "telemetry":
            return None
        t_s = self.now_s()
        recent = [r for _, r in self.reference.readings_between(t_s - WINDOW_S, t_s)]
        checks = (("temperature", self._temperature), ("flow", self._flow))
        for quantity, check in checks:
            reason = check(payload, recent)
            if reason is not None:
                with self._lock:
                    self.refusals.append((t_s, quantity, reason))
                return reason
        return None

    def _temperature(self, payload: dict, recent: list[dict]) -> str | None:
        temperatures = [r["temperature_c"] for r in recent if isinstance(r.get("temperature_c"), int | float)]
        if not temperatures:
            return None  # a reference without a thermometer (Modbus volume only): nothing to compare
        reference_c = sum(temperatures) / len(temperatures)
        difference = abs(payload["temperature_c"] - reference_c)
        if difference <= TEMPERATURE_TOLERANCE_C:
            return None
        return (
            f"temperature_c {payload['temperature_c']:g} °C differs from the reference meter's "
            f"{reference_c:.2f} °C by {difference:.2f} °C (> {TEMPERATURE_TOLERANCE_C:g} °C)"
        )

    def _flow(self, payload: dict, recent: list[dict]) -> str | None:
        flows = [r["flow_l_h"] for r in recent if isinstance(r.get("flow_l_h"), int | float)]
        if not flows or max(flows) - min(flows) > max(flows) * FLOW_TOLERANCE_PCT / 100:
            return None  # no reference flow, or it is changing (set point ramp): the line of this instant may lag
        low = min(flows) * (1 - FLOW_TOLERANCE_PCT / 100) - FLOW_TOLERANCE_L_H
        high = max(flows) * (1 + FLOW_TOLERANCE_PCT / 100) + FLOW_TOLERANCE_L_H
        flow_l_h = payload["flow_m3h"] * L_PER_M3
        if low <= flow_l_h <= high:
            return None
        return (
            f"flow_m3h {payload['flow_m3h']:g} outside the reference meter's "
            f"{min(flows) / L_PER_M3:.5g}..{max(flows) / L_PER_M3:.5g} m3/h of the last {WINDOW_S:g} s "
            f"(± {FLOW_TOLERANCE_PCT:g} % + {FLOW_TOLERANCE_L_H:g} L/h)"
        )

    def refused_between(self, start_t_s: float, stop_t_s: float) -> dict[str, list[str]]:
        """Refusal reasons by quantity ("temperature", "flow") in [start_t_s, stop_t_s] (s)."""
        found: dict[str, list[str]] = {}
        with self._lock:
            for t_s, quantity, reason in self.refusals:
                if start_t_s <= t_s <= stop_t_s:
                    found.setdefault(quantity, []).append(reason)
        return found


@dataclass(frozen=True)
class Latch:
    """A flying start/stop answer as checked: what the controller said and what the totaliser says.

    ``totaliser_volume_l`` is the volume the bench paces by (the totaliser's own line); ``problem``
    says why the answer cannot be trusted (None when it agrees with the totaliser).
    """

    action: str
    cmd_id: int
    t_s: float
    reference_volume_l: float
    reference_seq: int | None
    totaliser_volume_l: float | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        """The session.json form (``bench_points[name].start`` / ``.stop``)."""
        return {
            "cmd_id": self.cmd_id,
            "t_s": round(self.t_s, 6),
            "reference_volume_l": self.reference_volume_l,
            "reference_seq": self.reference_seq,
            "totaliser_volume_l": self.totaliser_volume_l,
        }


def check_latch(
    reference: TotaliserReader | Any,
    action: str,
    sent_t_s: float,
    answered: tuple[float, dict],
    wait_s: float = 1.0,
) -> Latch:
    """Check a latch answer received at ``answered[0]`` (s) for a command sent at ``sent_t_s`` (s).

    With ``reference_seq``: the totaliser line of that seq (waited for up to ``wait_s`` s, it may
    come after the MQTT event) must state the latched volume. Without: the latched volume must
    lie between the totaliser's last reading before the command and its first one after the answer
    (waited for up to ``wait_s`` s): the latch happened between the two.
    """
    t_s, event = answered
    latched = float(event["reference_volume_l"])
    seq = event.get("reference_seq")
    base = {"action": action, "cmd_id": event["cmd_id"], "t_s": t_s, "reference_volume_l": latched}
    if seq is not None:
        line = reference.reading_with_seq(seq)
        waited = 0.0
        while line is None and waited < wait_s:
            reference.wait_for_reading(reference.last_t_s or -1e9, 0.1)
            waited += 0.1
            line = reference.reading_with_seq(seq)
        if line is None:
            problem = f"point_{action}: the totaliser line it latched (seq {seq}) was never received"
            return Latch(**base, reference_seq=seq, totaliser_volume_l=None, problem=problem)
        line_l = float(line[1]["volume_l"])
        problem = None
        if abs(line_l - latched) > LATCH_TOLERANCE_L:
            problem = (
                f"point_{action}: latched reference_volume_l {latched:.4f} L disagrees with the totaliser "
                f"line it names (seq {seq}: {line_l:.4f} L)"
            )
        return Latch(**base, reference_seq=seq, totaliser_volume_l=line_l, problem=problem)
    before = reference.readings_between(-1e18, sent_t_s)
    after = reference.readings_between(t_s, 1e18) or _next_reading(reference, t_s, wait_s)
    if not before or not after:
        current = reference.last["volume_l"] if reference.last else None
        problem = f"point_{action}: no totaliser reading around the latch to check it against"
        return Latch(**base, reference_seq=None, totaliser_volume_l=current, problem=problem)
    low, high = float(before[-1][1]["volume_l"]), float(after[0][1]["volume_l"])
    problem = None
    if not low - LATCH_TOLERANCE_L <= latched <= high + LATCH_TOLERANCE_L:
        problem = (
            f"point_{action}: latched reference_volume_l {latched:.4f} L outside what the totaliser "
            f"read before the command and after the answer ({low:.4f}..{high:.4f} L)"
        )
    return Latch(**base, reference_seq=None, totaliser_volume_l=latched if problem is None else high, problem=problem)


def _next_reading(reference: Any, after_t_s: float, wait_s: float) -> list[tuple[float, dict]]:
    """The first good reading received after ``after_t_s`` (s), waited for up to ``wait_s`` s."""
    reference.wait_for_reading(after_t_s, wait_s)
    return reference.readings_between(after_t_s, 1e18)[:1]
