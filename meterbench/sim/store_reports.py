"""Synthetic report.json files for the store's tests and benchmark, with the simulated bench's error model.

Water meters get the simulator's true errors at Q3/Q2/Q1 (``water_meter._node_errors``: its
curve shape and its inside/near/outside mix) plus a per-lot bias; tanks the tank simulator's
``sample_tank_error_pct``. Verdicts follow from E, MPE and U by ``calibration.decide``, so the
reports pass the certificates package's ``report_problems`` like real ones. Check meters (the
same serial tested again and again) drift slowly, so the drift charts have something to show.
No video is read: these are reports as `meterbench run` would write them, not runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np

from meterbench.calibration import decide, decide_instrument
from meterbench.sim.tank import sample_tank_error_pct
from meterbench.sim.water_meter import _mpe_pct, _node_errors, _set_flows_m3h

__all__ = ["synthetic_report", "synthetic_report_text"]

_TYPES = ("DN15 single-jet", "DN20 multi-jet", "DN25 Woltman")
_BENCHES = ("bench-A", "bench-B", "bench-C")
_TECHNICIANS = ("tech-1", "tech-2", "tech-3", "tech-4")
_STANDARDS = ("REF-MAG-01", "REF-MAG-02", "REF-TANK-01")
_FAKE_SHA = "0" * 64


def hash_fraction(*parts: object) -> float:
    """A reproducible number in [0, 1) from the parts (a draw that needs no generator)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16) / 2**32


def _point(name: str, flow: float, reference_l: float, error_pct: float, mpe_pct: float, u_pct: float) -> dict:
    indicated = round(reference_l * (1 + error_pct / 100.0), 6)
    reference_l = round(reference_l, 6)
    error = round((indicated - reference_l) / reference_l * 100.0, 6)
    decision = decide(error, mpe_pct, u_pct, rule="simple")
    verdict, reason = decision.verdict, decision.reason
    if abs(hash_fraction(name, reference_l, error) - 0.5) < 0.015:  # ~3 %: unread frames, as a real bench has
        verdict, reason = "inconclusive", "too few readable frames at start or stop"
    return {
        "name": name,
        "flow_rate": round(flow, 6),
        "reference_volume": reference_l,
        "indicated_volume": indicated,
        "error_pct": error,
        "mpe_pct": round(mpe_pct, 6),
        "uncertainty_pct": round(u_pct, 6),
        "verdict": verdict,
        "reason": reason,
        "details": {"water_temperature_c": 20.0},
    }


def synthetic_report(index: int, seed: int = 0, meters: int = 4, check_meter_every: int = 5) -> dict:
    """Report number ``index`` of a seeded series: ``meters`` water meters (or one tank every 7th report).

    Every ``check_meter_every``-th report also tests the bench's check meter (serial CHECK-<bench>),
    whose error drifts by +0.002 %-points per report."""
    rng = np.random.default_rng([seed, index])
    near_rng = np.random.default_rng([seed, index, 1])
    day = dt.date(2026, 1, 1) + dt.timedelta(days=index % 330)
    bench = _BENCHES[index % len(_BENCHES)]
    instruments = []
    if index % 7 == 6:
        capacity = float(rng.choice([10.0, 20.0, 50.0, 200.0, 1000.0, 5000.0]))
        mpe = 0.1
        kind = "tank"
        for m in range(1):
            pts = [
                _point(f"R{r + 1}", 2.4, capacity, sample_tank_error_pct(rng, mpe) * 0.5, mpe, 0.02) for r in range(2)
            ]
            instruments.append(
                {
                    "id": f"T{m + 1}",
                    "kind": "tank",
                    "points": pts,
                    "serial": f"T-{seed}-{index}-{m}",
                    "type": f"{capacity:g} L standard capacity measure",
                    "nominal_volume_l": capacity,
                }
            )
    else:
        kind = "water-meter"
        flows = _set_flows_m3h()
        meter_type = _TYPES[index % len(_TYPES)]
        lot = f"LOT-{index // 40:03d}"
        lot_bias = float(np.random.default_rng([seed, index // 40]).normal(0, 0.3))
        draws = rng.random(meters)
        serials = [
            (f"SN-{seed}-{index}-{m}", "inside" if d < 0.8 else ("near" if d < 0.95 else "outside"))
            for m, d in enumerate(draws)
        ]
        if index % check_meter_every == 0:
            serials.append((f"CHECK-{bench}", "check"))
        for m, (serial, status) in enumerate(serials):
            errors, _ = _node_errors(rng, near_rng, "inside" if status == "check" else status, flows)
            if status == "check":
                errors = {p: 0.3 + 0.002 * index + float(rng.normal(0, 0.05)) for p in errors}
            pts = [
                _point(
                    p,
                    flows[p],
                    5.0 if p == "Q3" else 1.0,
                    errors[p] + lot_bias,
                    _mpe_pct(flows[p]),
                    float(rng.uniform(0.2, 0.6)),
                )
                for p in ("Q3", "Q2", "Q1")
            ]
            instruments.append(
                {
                    "id": f"M{m + 1}",
                    "kind": "water-meter",
                    "points": pts,
                    "serial": serial,
                    "type": meter_type,
                    "lot": lot,
                    "accuracy_class": 2,
                }
            )
    for instrument in instruments:
        instrument["verdict"] = decide_instrument([p["verdict"] for p in instrument["points"]]).verdict
        instrument["warnings"] = []
    session = f"synthetic-{seed}-{index:06d}"
    return {
        "session": session,
        "verdict": decide_instrument([i["verdict"] for i in instruments]).verdict,
        "instruments": instruments,
        "format": "meterbench-report",
        "report_version": 1,
        "bench_kind": kind,
        "simulated": True,
        "start_time_utc": f"{day.isoformat()}T{8 + index % 9:02d}:00:00Z",
        "decision_rule": "simple",
        "software": "meterbench 0.1.0",
        "inputs": {"session.json": hashlib.sha256(session.encode()).hexdigest()},
        "warnings": [],
        "git_revision": None,
        "tables": {"water_meter": _FAKE_SHA},
        "bench_id": bench,
        "technician_id": _TECHNICIANS[index % len(_TECHNICIANS)],
        "reference_standard_ids": [_STANDARDS[2] if kind == "tank" else _STANDARDS[index % 2]],
        "test_date": day.isoformat(),
    }


def synthetic_report_text(index: int, seed: int = 0, meters: int = 4) -> str:
    """The report as report.json text (indented like the real ones)."""
    return json.dumps(synthetic_report(index, seed, meters), indent=2) + "\n"
