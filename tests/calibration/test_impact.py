"""Helmet impact signal processing against analytic pulses and an independent implementation.

Analytic values come from scipy quad + optimisation in the tests, never from the code under test.
Filter corridor (SAE J211-1 Table 1 / Figure 1, CFC class points): f_H = CFC, f_N = 1.65 CFC (the
-3 dB frequency) [SRC: weisang.com "CFC Filter Analysis", J211/1 MAR95 table: CFC 60/180/600/1000
-> 100/300/1000/1650 Hz]; pass band +-0.5 dB from 0.1 Hz to f_H with +0.5/-1 dB at f_H, +0.5/-4 dB at
f_N, above f_N an upper bound falling 9 dB/octave [MEM: J211 figure as recalled, the J211 text is not
available here; docs/METROLOGY.md: "+-0.5 dB to 1 kHz" for CFC 1000 [MEM]].
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize

from meterbench.calibration import (
    ImpactSignalError,
    analyse_impact,
    cfc_filter,
    dwell_time_s,
    hic,
    impact_velocity_m_s,
    peak_g,
    resultant_g,
    velocity_from_flag_m_s,
    velocity_from_gates_m_s,
)
from meterbench.calibration.impact import cfc_coefficients, cfc_min_sample_rate_hz
from tests.calibration import impact_reference as reference

FS = 20_000.0


def half_sine(peak: float, duration_s: float, fs: float = FS, start_s: float = 0.010, total_s: float = 0.050):
    t = np.arange(int(round(total_s * fs))) / fs
    inside = (t >= start_s) & (t <= start_s + duration_s)
    return np.where(inside, peak * np.sin(np.pi * (t - start_s) / duration_s), 0.0)


def haversine(peak: float, duration_s: float, fs: float = FS, start_s: float = 0.010, total_s: float = 0.050):
    t = np.arange(int(round(total_s * fs))) / fs
    inside = (t >= start_s) & (t <= start_s + duration_s)
    return np.where(inside, peak * np.sin(np.pi * (t - start_s) / duration_s) ** 2, 0.0)


def analytic_hic(pulse, duration_s: float, max_window_s: float | None = None) -> float:
    """max over 0 <= t1 < t2 <= T of (t2 - t1)(mean)^2.5 by quad + Nelder-Mead from several starts."""

    def negative(x):
        t1, t2 = sorted(x)
        t1, t2 = max(t1, 0.0), min(t2, duration_s)
        if max_window_s is not None and t2 - t1 > max_window_s:
            middle = (t1 + t2) / 2
            t1, t2 = middle - max_window_s / 2, middle + max_window_s / 2
        if t2 - t1 <= 0:
            return 0.0
        area = quad(pulse, t1, t2, epsabs=1e-14, epsrel=1e-13)[0]
        return -(t2 - t1) * (area / (t2 - t1)) ** 2.5

    best = 0.0
    for width in (0.3, 0.6, 0.9):
        start = [duration_s * (1 - width) / 2, duration_s * (1 + width) / 2]
        found = minimize(negative, start, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-10})
        best = max(best, -found.fun)
    return best


# --- HIC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_s", [0.010, 0.010 + 0.37 / FS])  # on a sample, and between samples
def test_hic_of_a_half_sine_matches_the_analytic_value(start_s):
    peak, duration = 250.0, 0.006
    expected = analytic_hic(lambda t: peak * math.sin(math.pi * t / duration), duration)
    assert expected == pytest.approx(2458.5, abs=0.1)  # METROLOGY.md [DER] at 20 kHz: 2458 (window 4.0 ms)
    found = hic(half_sine(peak, duration, start_s=start_s), FS, None)
    # sample grid + trapezoid (which under-reads a concave pulse): 1.7e-4 low here; target 1e-3
    assert found.hic == pytest.approx(expected, rel=3e-4)
    assert found.t2_s - found.t1_s == pytest.approx(0.0040, abs=1.5 / FS)
    assert (found.t1_s + found.t2_s) / 2 == pytest.approx(start_s + duration / 2, abs=1 / FS)


def test_hic_of_a_haversine_matches_the_analytic_value():
    peak, duration = 180.0, 0.008
    expected = analytic_hic(lambda t: peak * math.sin(math.pi * t / duration) ** 2, duration)
    found = hic(haversine(peak, duration), FS, None)
    assert found.hic == pytest.approx(expected, rel=3e-4)


def test_hic15_and_hic36_bound_the_window_of_a_long_pulse():
    peak, duration = 60.0, 0.040  # the unbounded optimum (~27 ms) fits in 36 ms, not in 15 ms
    trace = half_sine(peak, duration, total_s=0.080)

    def pulse(t):
        return peak * math.sin(math.pi * t / duration)

    unbounded = analytic_hic(pulse, duration)
    capped15 = analytic_hic(pulse, duration, max_window_s=0.015)
    assert capped15 < 0.9 * unbounded
    assert hic(trace, FS, None).hic == pytest.approx(unbounded, rel=3e-4)
    assert hic(trace, FS, 0.036).hic == pytest.approx(unbounded, rel=3e-4)
    found15 = hic(trace, FS, 0.015)
    assert found15.hic == pytest.approx(capped15, rel=3e-4)
    assert found15.t2_s - found15.t1_s <= 0.015 + 1e-12


def test_hic_of_a_square_pulse_is_t_times_a_to_the_2_5():
    level, samples = 120.0, 100  # a plateau of 100 sample periods = 5 ms
    trace = np.zeros(400)
    trace[100 : 100 + samples + 1] = level
    found = hic(trace, FS, None)
    assert found.hic == pytest.approx(samples / FS * level**2.5, rel=1e-12)
    assert (found.t1_s, found.t2_s) == pytest.approx((100 / FS, 200 / FS), abs=1e-15)


def test_hic_equals_the_double_loop_reference_over_all_pairs():
    rng = np.random.default_rng(7)
    for fs, window in ((FS, None), (FS, 0.003), (10_000.0, 0.0015)):
        trace = half_sine(200.0, 0.005, fs=fs, start_s=0.002, total_s=0.012) + rng.normal(0, 8, int(0.012 * fs))
        expected, i, j = reference.hic_pairs(list(trace), fs, window)
        found = hic(trace, fs, window)
        assert found.hic == pytest.approx(expected, rel=1e-11)
        assert (round(found.t1_s * fs), round(found.t2_s * fs)) == (i, j)


def test_hic_beyond_15_ms_skips_only_windows_that_cannot_win():
    # 5 kHz, 80 ms: the search does lags <= 15 ms first, then longer ones up to its proven bound
    rng = np.random.default_rng(2)
    fs = 5000.0
    slow = half_sine(50.0, 0.045, fs=fs, start_s=0.010, total_s=0.080)
    for trace in (slow, slow + 3.0 + rng.normal(0, 2, slow.size), half_sine(200.0, 0.004, fs=fs, total_s=0.080)):
        for window in (None, 0.036):
            expected, i, j = reference.hic_pairs(list(trace), fs, window)
            found = hic(trace, fs, window)
            assert found.hic == pytest.approx(expected, rel=1e-11)
            assert (round(found.t1_s * fs), round(found.t2_s * fs)) == (i, j)


def test_hic_is_zero_without_a_positive_window_and_rejects_bad_windows():
    assert hic(-np.ones(50), FS, None).hic == 0.0
    with pytest.raises(ImpactSignalError, match="max_window_s"):
        hic(np.ones(50), FS, 0.0)


# --- dwell, peak, resultant --------------------------------------------------------------------


@pytest.mark.parametrize("level", [150.0, 200.0, 249.0])
def test_dwell_of_a_half_sine_is_t_times_1_minus_2_over_pi_asin(level):
    peak, duration = 250.0, 0.006
    expected = duration * (1 - 2 / math.pi * math.asin(level / peak))
    for start_s in (0.010, 0.010 + 0.61 / FS):
        found = dwell_time_s(half_sine(peak, duration, start_s=start_s), FS, level)
        assert abs(found - expected) * FS < 0.1  # within 0.1 sample (target: one sample)


def test_dwell_is_cumulative_over_two_excursions_and_matches_the_reference():
    peak, duration = 250.0, 0.006
    double = half_sine(peak, duration, start_s=0.005) + half_sine(peak, duration, start_s=0.025)
    single = dwell_time_s(half_sine(peak, duration), FS, 150.0)
    assert dwell_time_s(double, FS, 150.0) == pytest.approx(2 * single, rel=1e-9)
    noisy = double + np.random.default_rng(3).normal(0, 20, double.size)
    for level in (150.0, 200.0):
        assert dwell_time_s(noisy, FS, level) == pytest.approx(reference.dwell(list(noisy), FS, level), rel=1e-12)


def test_dwell_of_a_square_pulse_adds_the_interpolated_edges():
    level, samples, above = 300.0, 80, 150.0
    trace = np.zeros(300)
    trace[50 : 50 + samples + 1] = level
    # the trace is linear between samples: each edge is a one-sample ramp, above 150 g for half of it
    expected = samples / FS + 2 * (1 - above / level) / FS
    assert dwell_time_s(trace, FS, above) == pytest.approx(expected, rel=1e-12)
    assert dwell_time_s(trace, FS, level) == 0.0  # never strictly above its own plateau


def test_peak_is_the_largest_sample_and_its_time():
    trace = half_sine(250.0, 0.006, start_s=0.010 + 0.3 / FS)
    value, time_s = peak_g(trace, FS)
    index = int(np.argmax(trace))
    assert value == trace[index] and time_s == index / FS
    assert value == pytest.approx(250.0, rel=1e-4)  # the sampled maximum of a 6 ms half-sine at 20 kHz
    assert peak_g(np.array([1.0, 3.0, 3.0, 2.0]), 1000.0) == (3.0, 0.001)  # first of equal samples


def test_resultant_of_three_axes():
    assert resultant_g(np.array([3.0, 0.0]), np.array([4.0, 0.0]), np.array([12.0, -2.0])).tolist() == [13.0, 2.0]
    with pytest.raises(ImpactSignalError, match="one shape"):
        resultant_g(np.ones(3), np.ones(3), np.ones(4))


# --- the J211 filter ---------------------------------------------------------------------------


def _gain_db(fs: float, cfc: int, frequency: float) -> float:
    """Gain of the filter measured on a filtered sine (least-squares amplitude in the middle)."""
    t = np.arange(int(0.4 * fs)) / fs
    cycles = max(1.0, round(frequency * 0.4))
    frequency = cycles / 0.4 if frequency > 0 else 0.0
    x = np.sin(2 * np.pi * frequency * t) if frequency > 0 else np.ones_like(t)
    y = cfc_filter(x, fs, cfc)
    middle = slice(len(t) // 4, 3 * len(t) // 4)
    basis = np.column_stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)])[middle]
    if frequency == 0:
        return 20 * math.log10(float(np.mean(y[middle])))
    amplitude = np.hypot(*np.linalg.lstsq(basis, y[middle], rcond=None)[0])
    return 20 * math.log10(amplitude)


@pytest.mark.parametrize("cfc,fs", [(1000, 20_000.0), (1000, 10_000.0), (600, 20_000.0), (180, 20_000.0), (60, 2000.0)])
def test_filter_gain_lies_in_the_j211_corridor(cfc, fs):
    f_h, f_n = float(cfc), 1.65 * cfc
    assert _gain_db(fs, cfc, 0.0) == pytest.approx(0.0, abs=1e-9)  # DC
    for frequency in (0.1 * f_h, 0.5 * f_h, 0.9 * f_h):
        assert -0.5 <= _gain_db(fs, cfc, frequency) <= 0.5
    assert -1.0 <= _gain_db(fs, cfc, f_h) <= 0.5
    assert -4.0 <= _gain_db(fs, cfc, f_n) <= 0.5
    for frequency in (1.5 * f_n, 2 * f_n, 4 * f_n):
        if frequency < 0.45 * fs:
            assert _gain_db(fs, cfc, frequency) <= 0.5 - 9 * math.log2(frequency / f_n)


def test_filter_cutoff_near_1_65_cfc():
    from scipy.optimize import brentq
    from scipy.signal import freqz

    b, a = cfc_coefficients(FS, 1000)

    def two_pass_db(frequency):
        response = freqz(b, a, worN=[frequency], fs=FS)[1][0]
        return 20 * math.log10(abs(response) ** 2) + 3.0

    assert brentq(two_pass_db, 1000, 3000) == pytest.approx(1686, abs=5)  # METROLOGY.md [DER]: 1686 Hz


def test_filter_is_phaseless_a_symmetric_pulse_keeps_its_peak_and_its_symmetry():
    trace = haversine(250.0, 0.004, start_s=0.020, total_s=0.048)  # centre at sample 440
    filtered = cfc_filter(trace, FS, 1000)
    centre = int(np.argmax(trace))
    assert int(np.argmax(filtered)) == centre
    k = np.arange(1, 200)
    assert np.max(np.abs(filtered[centre - k] - filtered[centre + k])) < 1e-6 * 250


def test_filter_equals_the_independent_difference_equation():
    rng = np.random.default_rng(11)
    base = half_sine(230.0, 0.006, total_s=0.030)
    trace = np.column_stack([0.2 * base + 3, base + rng.normal(0, 2, base.size), rng.normal(0, 1, base.size)])
    for cfc in (1000, 600, 180, 60):
        filtered = cfc_filter(trace, FS, cfc)
        for axis in range(3):
            expected = np.array(reference.j211_filter(list(trace[:, axis]), FS, cfc))
            assert np.max(np.abs(filtered[:, axis] - expected)) < 1e-9


def test_filter_preconditions_and_none():
    assert cfc_min_sample_rate_hz(1000) == 10_000.0
    with pytest.raises(ImpactSignalError, match=r"10 x CFC = 10000 Hz"):
        cfc_filter(np.zeros(100), 8000.0, 1000)
    with pytest.raises(ImpactSignalError, match="cfc: expected one of 60, 180, 600, 1000"):
        cfc_filter(np.zeros(100), FS, 500)
    with pytest.raises(ImpactSignalError, match="finite"):
        cfc_filter(np.array([0.0, np.nan, 1.0]), FS, 1000)
    trace = np.array([1.0, 5.0, 2.0])
    assert cfc_filter(trace, FS, None).tolist() == trace.tolist()
    assert cfc_filter(np.full(5, 7.0), FS, 1000) == pytest.approx(np.full(5, 7.0), abs=1e-12)  # shorter than pad


# --- light gate --------------------------------------------------------------------------------


def test_impact_velocity_from_a_flag_or_two_gates():
    assert velocity_from_flag_m_s(0.050, 0.0085) == pytest.approx(5.882353, rel=1e-6)
    assert velocity_from_gates_m_s(0.100, 0.0165) == pytest.approx(6.060606, rel=1e-6)
    assert impact_velocity_m_s(flag_length_m=0.050, blocked_s=0.0085) == pytest.approx(5.882353, rel=1e-6)
    corrected = impact_velocity_m_s(gate_spacing_m=0.1, interval_s=0.0165, height_above_impact_m=0.02)
    assert corrected == pytest.approx(math.sqrt((0.1 / 0.0165) ** 2 + 2 * 9.80665 * 0.02), rel=1e-12)
    with pytest.raises(ImpactSignalError, match="either"):
        impact_velocity_m_s(flag_length_m=0.05, blocked_s=0.01, gate_spacing_m=0.1, interval_s=0.02)
    with pytest.raises(ImpactSignalError, match="blocked_s"):
        impact_velocity_m_s(flag_length_m=0.05)
    with pytest.raises(ImpactSignalError, match="blocked_s: expected a positive"):
        velocity_from_flag_m_s(0.05, 0.0)


# --- one drop ------------------------------------------------------------------------------------


def test_analyse_impact_of_a_triaxial_drop():
    base = half_sine(250.0, 0.006)
    trace = np.column_stack([0.1 * base, -0.05 * base, base])
    features = analyse_impact(trace, FS)
    filtered = cfc_filter(trace, FS, 1000)
    resultant = np.sqrt(np.sum(filtered**2, axis=1))
    assert features.filtered_g == pytest.approx(resultant, abs=1e-12)
    assert features.peak_g == pytest.approx(float(resultant.max()), rel=1e-12)
    assert features.peak_g == pytest.approx(250.0 * math.sqrt(1.0125), rel=2e-3)
    assert features.t_peak_ms == pytest.approx(13.0, abs=0.05)
    assert features.hic == pytest.approx(hic(resultant, FS, None).hic, rel=1e-12)
    assert features.hic15 == features.hic36 == features.hic  # the 4 ms optimum fits both caps
    assert 0.010 < features.hic_window_s[0] < features.hic_window_s[1] < 0.016
    assert set(features.dwell_ms) == {"150", "200"}
    assert features.dwell_ms["200"] == pytest.approx(dwell_time_s(resultant, FS, 200.0) * 1e3, rel=1e-12)
    assert (features.clipped, features.dead_channels, features.preconditions_ok) == (False, [], True)
    assert features.summary() == {
        "peak_g": features.peak_g,
        "hic": features.hic,
        "hic15": features.hic15,
        "hic36": features.hic36,
        "dwell_ms": features.dwell_ms,
        "t_peak_ms": features.t_peak_ms,
    }


def test_analyse_impact_flags_clipping_dead_channels_and_failed_preconditions():
    base = half_sine(250.0, 0.006)
    trace = np.column_stack([0.1 * base, 0.05 * base, base])
    assert analyse_impact(np.minimum(trace, 220.0), FS).clipped
    symmetric = half_sine(250.0, 0.006, start_s=0.010 + 0.5 / FS)  # two equal samples at the top
    assert np.sum(symmetric == symmetric.max()) == 2 and not analyse_impact(symmetric, FS).clipped
    dead = trace.copy()
    dead[:, 0] = np.random.default_rng(5).normal(0, 0.3, len(dead))
    dead[:, 1] = 0.0
    assert analyse_impact(dead, FS).dead_channels == [0, 1]
    slow = analyse_impact(trace[::4], FS / 4, cfc=1000)  # 5 kHz < 10 x CFC 1000
    assert not slow.preconditions_ok and "10 x CFC" in slow.precondition_problem
    assert slow.peak_g == pytest.approx(float(np.max(np.linalg.norm(trace[::4], axis=1))))  # analysed unfiltered
    cut = analyse_impact(trace[: int(0.0125 * FS)], FS)  # recording stops before the pulse ends
    assert not cut.preconditions_ok and "not fully recorded" in cut.precondition_problem
    with pytest.raises(ImpactSignalError, match=r"\(N, 3\)"):
        analyse_impact(np.zeros((100, 2)), FS)
