"""Simulated helmet impact bench: a `bench_kind: "helmet-impact"` session folder with its truth.

Each drop is a skewed half-sine liner pulse (rise 40 % of the duration) along a fixed direction
split over three axes, sampled at 20 kHz for 50 ms (pulse at 15 ms), plus a 4 kHz headform ring
(decays in 1 ms), white noise (0.5 g rms) and a per-axis offset (<= 3 g). truth.json holds the
noiseless pulse's features (`analyse_impact` at CFC 1000) and the true verdict under the profile
with no guard band. Impacts: clear passes and fails, some within 2 % of the 400 g limit, one at
a velocity outside the window, one clipped at the ADC's range, one with a dead channel; a second
model's helmets hot- and cold-conditioned with chamber timers, one drop 4.6 min out of the chamber
(void under FMVSS 218's 4 min). The day's rig check: six reference drops (5 kg sphere, about 400 g,
2.2 ms) before the impacts and six after.
Written through `SessionRecorder` as a live rig would be: each trace hashed into session.json,
hashes.json on close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meterbench.calibration._helmet import conditioning_void_reason, helmet_profile
from meterbench.calibration.impact import analyse_impact
from meterbench.session.writer import SessionRecorder

__all__ = ["HELMET_FS_HZ", "SimDrop", "pulse_g", "simulate_helmet"]

HELMET_FS_HZ = 20_000.0
_TRACE_S = 0.050
_PULSE_START_S = 0.015
_RISE_FRACTION = 0.4
_DIRECTION = np.array([0.30, 0.20, 0.93]) / np.linalg.norm([0.30, 0.20, 0.93])
_RING_HZ, _RING_TAU_S, _RING_G = 4000.0, 0.001, 4.0
_NOISE_G = 0.5
_ADC_RANGE_G = 450.0
PROFILE = "fmvss-218"
_DAY = "2026-11-27"
_REFERENCE_DROPS = 6
_REFERENCE_PEAK_G, _REFERENCE_PULSE_S, _DRIFT_G = 400.0, 0.0022, 40.0


@dataclass(frozen=True)
class SimDrop:
    """One simulated drop: the helmet, its site, the liner pulse's peak (g) and duration (ms), and how
    it was recorded (velocity m/s, anvil, clipped at the ADC, a dead axis, conditioning and timer)."""

    helmet: str
    site: str
    peak_g: float
    duration_ms: float
    velocity_m_s: float = 6.0
    clip: bool = False
    dead_axis: int | None = None
    conditioning: str = "ambient"
    out_of_chamber_s: float | None = None  # s from removal from the conditioning chamber to the drop
    model: str = "SIM-FF1"
    anvil: str = "flat"


# (helmet, site, peak g, pulse ms, velocity m/s, clipped): limit 400 g, U 1.5 %
_DROPS = (
    SimDrop("H1", "front", 300.0, 2.6),
    SimDrop("H1", "rear", 340.0, 2.5),
    SimDrop("H1", "left", 392.5, 2.4),  # 1.9 % under the limit: a guard-banded pass
    SimDrop("H1", "right", 355.0, 2.5),
    SimDrop("H2", "front", 407.5, 2.4),  # 1.9 % over: a guard-banded fail
    SimDrop("H2", "rear", 397.0, 2.4),  # within U: inconclusive
    SimDrop("H2", "left", 440.0, 2.3),
    SimDrop("H3", "front", 330.0, 2.5, velocity_m_s=6.35),  # out of the 5.8-6.2 m/s window
    SimDrop("H3", "rear", 520.0, 2.2, clip=True),  # beyond the ADC's 450 g
    SimDrop("H3", "left", 350.0, 2.5, dead_axis=1),  # the y channel stuck at its offset
    SimDrop("H4", "front", 320.0, 2.6, conditioning="hot", out_of_chamber_s=95.0, model="SIM-FF2"),
    SimDrop("H4", "rear", 330.0, 2.6, conditioning="hot", out_of_chamber_s=276.0, model="SIM-FF2"),  # 4.6 min: void
    SimDrop("H5", "front", 360.0, 2.5, conditioning="cold", out_of_chamber_s=140.0, model="SIM-FF2"),
    SimDrop("H5", "rear", 350.0, 2.5, conditioning="cold", out_of_chamber_s=230.0, model="SIM-FF2"),  # 3.83 min
)


def pulse_g(peak_g: float, duration_s: float) -> np.ndarray:
    """The noiseless resultant pulse (N,) in g: a half-sine rising for 40 % of ``duration_s``."""
    t = np.arange(round(_TRACE_S * HELMET_FS_HZ)) / HELMET_FS_HZ - _PULSE_START_S
    rise, fall = _RISE_FRACTION * duration_s, (1 - _RISE_FRACTION) * duration_s
    pulse = np.zeros_like(t)
    up = (t >= 0) & (t < rise)
    down = (t >= rise) & (t <= duration_s)
    pulse[up] = np.sin(0.5 * np.pi * t[up] / rise)
    pulse[down] = np.cos(0.5 * np.pi * (t[down] - rise) / fall)
    return peak_g * pulse


def _true_verdict(features, drop: SimDrop, profile) -> str:
    if conditioning_void_reason(drop.conditioning, drop.out_of_chamber_s, profile) is not None:
        return "inconclusive"
    low, high = profile.velocity_window_m_s.value[drop.anvil]
    if not low <= drop.velocity_m_s <= high:
        return "inconclusive"
    return "fail" if any(value > limit for value, limit in _criteria(features, profile)) else "pass"


def _criteria(features, profile) -> list[tuple[float, float]]:
    """(true value, limit) of each criterion of the profile: peak, each dwell level, HIC if it has one."""
    pairs = [(features.peak_g, float(profile.peak_max_g.value))]
    pairs += [(features.dwell_ms[k], float(v)) for k, v in profile.dwell_limits_ms.value.items()]
    if profile.hic_max.value is not None:
        pairs.append((features.hic, float(profile.hic_max.value)))
    return pairs


def _near(features, profile) -> bool:
    """Whether a criterion's true value is within 2 % of its limit."""
    return any(abs(value - limit) <= 0.02 * limit for value, limit in _criteria(features, profile))


def _reference_drops(recorder: SessionRecorder, rig: str, rng: np.random.Generator) -> list[dict]:
    """The rig's check drops of the day (16 CFR 1203.17(b)(1): six, the last three counted), before the
    impacts and after them; ``rig`` "drift" makes the after series read high (a failed check),
    "missing" records no after series. Returns their truths."""
    truths = []
    for when, start in (("before", "08:40"), ("after", "10:30")):
        if when == "after" and rig == "missing":
            continue
        for k in range(_REFERENCE_DROPS):
            peak = _REFERENCE_PEAK_G + (_DRIFT_G if when == "after" and rig == "drift" else 0.0)
            peak += float(rng.normal(0.0, 2.0))
            clean = np.outer(pulse_g(peak, _REFERENCE_PULSE_S), _DIRECTION)
            entry = {
                "name": f"ref-{when}-{k + 1}",
                "when": when,
                "day": _DAY,
                "time_utc": f"{_DAY}T{start}:{10 * k:02d}Z",
                "velocity_m_s": 5.44,
            }
            recorder.add_trace(
                "reference_drops", entry, _recorded(clean, SimDrop("REF", when, peak, 2.2), rng), fs_hz=HELMET_FS_HZ
            )
            truths.append({"name": entry["name"], "peak_g": analyse_impact(clean, HELMET_FS_HZ, cfc=1000).peak_g})
    return truths


def simulate_helmet(
    out_dir: Path,
    seed: int = 0,
    rig: str = "ok",
    drops: Sequence[SimDrop] | None = None,
    profile: str = PROFILE,
) -> Path:
    """Write a simulated helmet-impact session folder (session.json, traces/, truth.json); return it.

    ``rig``: "ok" (reference drops before and after the impacts, within 380-425 g), "drift" (the
    after series reads about 440 g: the rig check fails) or "missing" (no after series).
    ``drops`` (default: the fourteen described above) and ``profile`` (a helmet.json profile)
    let a benchmark draw its own population."""
    if rig not in ("ok", "drift", "missing"):
        raise ValueError(f"rig: expected 'ok', 'drift' or 'missing', got {rig!r}")
    out_dir = Path(out_dir)
    if (out_dir / "session.json").exists():
        raise FileExistsError(f"{out_dir}: holds a session already; choose an empty --out")
    rng = np.random.default_rng(seed)
    drops = _DROPS if drops is None else tuple(drops)
    profile_name, profile = profile, helmet_profile(profile)
    helmets = [
        {"id": h, "model": model, "size": "medium", "lot": "L2026-11", "serial": f"SIM-{h}"}
        for h, model in dict.fromkeys((d.helmet, d.model) for d in drops)
    ]
    manifest = {
        "session_id": f"sim-helmet-seed{seed}",
        "bench_kind": "helmet-impact",
        "start_time_utc": f"{_DAY}T08:30:00Z",
        "simulated": True,
        "profile": profile_name,
        "helmets": helmets,
        "impacts": [],
    }
    truths = []
    with SessionRecorder.create(out_dir, manifest) as recorder:
        references = _reference_drops(recorder, rig, np.random.default_rng([seed, 1]))
        for index, drop in enumerate(drops):
            name = f"{drop.helmet}-{drop.site}"
            repeat = sum(t["name"] == name or t["name"].startswith(f"{name}-") for t in truths)
            name = f"{name}-{repeat + 1}" if repeat else name  # the 2nd impact at a site: "H1-front-2"
            clean = np.outer(pulse_g(drop.peak_g, drop.duration_ms / 1e3), _DIRECTION)
            true = analyse_impact(clean, HELMET_FS_HZ, cfc=1000)
            recorder.add_trace(
                "impacts", _impact_entry(name, drop, index), _recorded(clean, drop, rng), fs_hz=HELMET_FS_HZ
            )
            verdict = _true_verdict(true, drop, profile)
            truths.append(
                {
                    "name": name,
                    **true.summary(),
                    "verdict": verdict,
                    "clipped": drop.clip,
                    "dead_channel": drop.dead_axis is not None,
                    "near_limit": _near(true, profile),
                    "void": conditioning_void_reason(drop.conditioning, drop.out_of_chamber_s, profile) is not None,
                }
            )
        recorder.write_truth(
            {
                "bench_kind": "helmet-impact",
                "profile": profile_name,
                "impacts": truths,
                "reference_drops": references,
                "rig_check_ok": rig == "ok",
            }
        )
    return out_dir


def _impact_entry(name: str, drop: SimDrop, index: int) -> dict:
    """session.json's entry of one drop (the recorder adds trace, fs_hz, units, sha256)."""
    return {
        "name": name,
        "helmet": drop.helmet,
        "site": drop.site,
        "anvil": drop.anvil,
        "velocity_m_s": drop.velocity_m_s,
        "conditioning": drop.conditioning,
        "time_utc": f"{_DAY}T{9 + index // 60:02d}:{index % 60:02d}:00Z",
        "sequence": index + 1,
    } | ({} if drop.out_of_chamber_s is None else {"out_of_chamber_s": drop.out_of_chamber_s})


def _recorded(clean: np.ndarray, drop: SimDrop, rng: np.random.Generator) -> np.ndarray:
    """What the DAQ records of a clean (N, 3) pulse: headform ring, noise, offsets, clipping, a dead channel."""
    t = np.arange(len(clean)) / HELMET_FS_HZ
    ring_t = np.clip(t - _PULSE_START_S, 0, None)
    ring = _RING_G * np.sin(2 * np.pi * _RING_HZ * ring_t) * np.exp(-ring_t / _RING_TAU_S) * (ring_t > 0)
    trace = clean + np.outer(ring, [0.0, 0.0, 1.0])
    noise = rng.normal(0.0, _NOISE_G, trace.shape)
    offsets = rng.uniform(-3.0, 3.0, 3)
    trace += noise + offsets
    if drop.clip:
        trace = np.clip(trace, -_ADC_RANGE_G, _ADC_RANGE_G)
    if drop.dead_axis is not None:
        trace[:, drop.dead_axis] = offsets[drop.dead_axis]
    return trace
