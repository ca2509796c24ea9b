"""Fusion of register readings with the reference volume track.

A camera reads the meter register many times per second; each reading may be
noisy or (rarely) wrong. The reference meter gives a dense, trusted volume
track on the same clock. Around each flying start/stop instant the register
readings are regressed on the reference volume, misreads are rejected (never
averaged in) and the register value *at the instant* is the fit's intercept,
with its standard uncertainty. Between the two instants, sparse readings must
follow the same line: a register that stalls, jumps or runs backwards makes
the point untrustworthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ReferenceTrack",
    "InstantEstimate",
    "estimate_at_instant",
    "check_track",
    "TrackCheck",
]

#: Robust scale of a normal distribution from the median absolute deviation.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ReferenceTrack:
    """The reference meter's cumulative volume (L) against session time (s)."""

    t_s: np.ndarray
    volume_l: np.ndarray

    @classmethod
    def from_samples(cls, t_s, volume_l) -> ReferenceTrack:
        """Build from samples; they must be time-ordered and non-decreasing in volume."""
        t = np.asarray(t_s, dtype=np.float64)
        v = np.asarray(volume_l, dtype=np.float64)
        if t.ndim != 1 or t.shape != v.shape or t.size < 2:
            raise ValueError("reference track: need at least 2 (t_s, volume_l) samples of equal length")
        if np.any(np.diff(t) <= 0):
            raise ValueError("reference track: t_s must be strictly increasing")
        if np.any(np.diff(v) < 0):
            raise ValueError("reference track: volume_l runs backwards")
        return cls(t, v)

    def volume_at(self, t_s) -> np.ndarray:
        """Reference volume (L) at the given times, linear between samples; NaN outside."""
        return np.interp(t_s, self.t_s, self.volume_l, left=np.nan, right=np.nan)

    def flow_l_s(self, t0_s: float, t1_s: float) -> float:
        """Mean reference flow (L/s) over [t0_s, t1_s]."""
        v0, v1 = self.volume_at([t0_s, t1_s])
        return float((v1 - v0) / (t1_s - t0_s))

    def covers(self, t0_s: float, t1_s: float) -> bool:
        """True when the track spans [t0_s, t1_s]."""
        return bool(self.t_s[0] <= t0_s and t1_s <= self.t_s[-1])


@dataclass
class InstantEstimate:
    """The register value at one instant, from a robust local fit."""

    ok: bool
    volume_l: float = float("nan")
    u_l: float = float("nan")  # standard uncertainty of volume_l (L)
    slope: float = float("nan")  # register litres per reference litre (1 + error)
    n_used: int = 0
    n_rejected: int = 0
    residual_sd_l: float = float("nan")
    reason: str = ""


def _weighted_line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares y = a + b x; returns a, b, covariance of (a, b) scaled by 1."""
    design = np.stack([np.ones_like(x), x], axis=1)
    wd = design * w[:, None]
    normal = design.T @ wd
    cov = np.linalg.inv(normal)
    a, b = cov @ (wd.T @ y)
    return float(a), float(b), cov


def estimate_at_instant(
    reading_t_s: np.ndarray,
    reading_volume_l: np.ndarray,
    reading_u_l: np.ndarray,
    reference: ReferenceTrack,
    instant_t_s: float,
    *,
    min_readings: int = 3,
    reject_sigma: float = 4.0,
    slope_bounds: tuple[float, float] = (0.5, 1.5),
) -> InstantEstimate:
    """Estimate the register value (L) at ``instant_t_s`` from nearby readings.

    Model: register = a + b * (V_ref(t) - V_ref(instant)); the intercept ``a``
    is the register value at the instant. Readings more than ``reject_sigma``
    robust standard deviations (never below the reading's own uncertainty)
    off the fit are rejected and the fit repeated. When the flow is ~zero the
    slope is unidentifiable and a weighted mean is used instead.
    """
    t = np.asarray(reading_t_s, dtype=np.float64)
    y = np.asarray(reading_volume_l, dtype=np.float64)
    u = np.maximum(np.asarray(reading_u_l, dtype=np.float64), 1e-9)
    valid = np.isfinite(t) & np.isfinite(y) & np.isfinite(u)
    t, y, u = t[valid], y[valid], u[valid]
    if t.size < min_readings:
        return InstantEstimate(
            False, reason=f"only {t.size} good register readings near t={instant_t_s:.2f} s (need {min_readings})"
        )
    ref_at_instant = float(reference.volume_at(instant_t_s))
    if not np.isfinite(ref_at_instant):
        return InstantEstimate(False, reason=f"reference track does not cover t={instant_t_s:.2f} s")
    x = reference.volume_at(t) - ref_at_instant
    covered = np.isfinite(x)  # readings beyond the reference track's ends cannot be placed on it
    t, y, u, x = t[covered], y[covered], u[covered], x[covered]
    if t.size < min_readings:
        return InstantEstimate(
            False,
            reason=f"only {t.size} register readings near t={instant_t_s:.2f} s "
            f"fall inside the reference track (need {min_readings})",
        )

    keep = np.ones(t.size, dtype=bool)
    fit_slope = np.ptp(x) > 3 * float(np.median(u))
    for _ in range(5):
        xs, ys, us = x[keep], y[keep], u[keep]
        if xs.size < min_readings:
            break
        w = 1.0 / us**2
        if fit_slope:
            a, b, cov = _weighted_line_fit(xs, ys, w)
        else:
            a, b = float(np.sum(w * ys) / np.sum(w)), 1.0
            cov = np.array([[1.0 / np.sum(w), 0.0], [0.0, 0.0]])
        residual = y - (a + b * x)
        scale = _MAD_TO_SIGMA * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        limit = reject_sigma * np.maximum(u, scale)
        new_keep = np.abs(residual) <= limit
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    n_used = int(keep.sum())
    n_rejected = int(t.size - n_used)
    if n_used < min_readings:
        return InstantEstimate(
            False,
            n_used=n_used,
            n_rejected=n_rejected,
            reason=f"only {n_used} consistent register readings near t={instant_t_s:.2f} s "
            f"({n_rejected} rejected as misreads)",
        )
    if fit_slope and not (slope_bounds[0] <= b <= slope_bounds[1]):
        return InstantEstimate(
            False,
            slope=b,
            n_used=n_used,
            n_rejected=n_rejected,
            reason=f"register advances {b:.3f} L per reference litre near t={instant_t_s:.2f} s "
            f"(expected {slope_bounds[0]}..{slope_bounds[1]})",
        )
    residual_kept = residual[keep]
    dof = max(n_used - (2 if fit_slope else 1), 1)
    chi2 = float(np.sum((residual_kept / u[keep]) ** 2) / dof)
    # Inflate the formal uncertainty when the scatter exceeds the stated reading uncertainty.
    u_a = float(np.sqrt(cov[0, 0] * max(chi2, 1.0)))
    # Neighbouring frames share systematic reading errors: never claim better than the
    # single-reading uncertainty divided by sqrt(3) (an effective ~3 independent looks).
    u_floor = float(np.median(u[keep])) / np.sqrt(3.0)
    return InstantEstimate(
        True,
        volume_l=a,
        u_l=max(u_a, u_floor),
        slope=b,
        n_used=n_used,
        n_rejected=n_rejected,
        residual_sd_l=float(np.std(residual_kept, ddof=1)) if n_used > 1 else 0.0,
    )


@dataclass
class TrackCheck:
    """Whether the register followed the reference between start and stop."""

    ok: bool
    n_checked: int = 0
    n_outliers: int = 0
    max_deviation_l: float = 0.0
    reason: str = ""
    outlier_times_s: list[float] = field(default_factory=list)


def check_track(
    reading_t_s: np.ndarray,
    reading_volume_l: np.ndarray,
    reading_u_l: np.ndarray,
    reference: ReferenceTrack,
    start: InstantEstimate,
    stop: InstantEstimate,
    start_t_s: float,
    stop_t_s: float,
    *,
    tolerance_sigma: float = 6.0,
    max_outlier_share: float = 0.2,
) -> TrackCheck:
    """Check that readings between start and stop lie on the line joining them.

    The line is register(t) = start + (stop - start) * progress(t), with
    progress the reference volume's fraction of the test volume, so flow
    changes inside the point are followed. Single misreads are tolerated and
    counted (they are not used anyway); a register that stalls, skips or runs
    backwards for a sizeable share of the readings fails the check.
    """
    t = np.asarray(reading_t_s, dtype=np.float64)
    y = np.asarray(reading_volume_l, dtype=np.float64)
    u = np.asarray(reading_u_l, dtype=np.float64)
    inside = (t > start_t_s) & (t < stop_t_s) & np.isfinite(y)
    t, y, u = t[inside], y[inside], u[inside]
    if t.size == 0:
        return TrackCheck(True, reason="no readings between start and stop to check")
    ref0, ref1 = reference.volume_at([start_t_s, stop_t_s])
    progress = (reference.volume_at(t) - ref0) / (ref1 - ref0)
    expected = start.volume_l + (stop.volume_l - start.volume_l) * progress
    deviation = y - expected
    limit = tolerance_sigma * np.sqrt(u**2 + max(start.u_l, stop.u_l) ** 2)
    outliers = np.abs(deviation) > limit
    n_out = int(outliers.sum())
    share = n_out / t.size
    result = TrackCheck(
        ok=share <= max_outlier_share,
        n_checked=int(t.size),
        n_outliers=n_out,
        max_deviation_l=float(np.max(np.abs(deviation))),
        outlier_times_s=[float(v) for v in t[outliers][:20]],
    )
    if not result.ok:
        result.reason = (
            f"register left the reference line in {n_out} of {t.size} readings "
            f"between start and stop (max {result.max_deviation_l:.4f} L off)"
        )
    return result
