import numpy as np
import pytest

from meterbench.verify.fusion import ReferenceTrack, check_track, estimate_at_instant


def _track(flow_l_s=0.7, duration_s=60.0, rate_hz=10.0):
    t = np.arange(0.0, duration_s, 1.0 / rate_hz)
    return ReferenceTrack.from_samples(t, flow_l_s * t)


def test_reference_track_rejects_backwards_volume():
    with pytest.raises(ValueError, match="backwards"):
        ReferenceTrack.from_samples([0, 1, 2], [0.0, 1.0, 0.5])


def test_intercept_recovers_register_value_at_instant_with_noise_and_misreads():
    rng = np.random.default_rng(1)
    ref = _track()
    error = 0.013  # the meter over-registers by 1.3 %
    register0 = 1234.5678
    t = np.arange(20.0, 30.0, 0.1)
    truth = register0 + (1 + error) * ref.volume_at(t)
    readings = truth + rng.normal(0, 0.003, t.size)
    readings[[5, 40, 77]] += [1.0, -0.1, 10.0]  # misreads: a wrong digit, a wrong dial, a wrong wheel
    est = estimate_at_instant(t, readings, np.full(t.size, 0.003), ref, 25.0)
    assert est.ok
    assert est.n_rejected == 3
    # Over 200 seeds the intercept scatters by 0.0003 L (SD) and the slope by 0.00016: limits at ~3.5 SD.
    assert abs(est.volume_l - (register0 + (1 + error) * 0.7 * 25.0)) < 0.001
    assert abs(est.slope - (1 + error)) < 0.0006
    # neighbouring frames share systematic errors: never better than one reading's u / sqrt(3)
    assert est.u_l == pytest.approx(0.003 / np.sqrt(3), rel=1e-9)


def test_too_few_readings_is_not_a_value():
    ref = _track()
    est = estimate_at_instant(np.array([10.0, 10.1]), np.array([1.0, 1.07]), np.array([0.01, 0.01]), ref, 10.0)
    assert not est.ok
    assert "only 2" in est.reason


def test_instant_outside_reference_is_refused():
    ref = _track(duration_s=10)
    t = np.arange(0.0, 5.0, 0.1)
    est = estimate_at_instant(t, 0.7 * t, np.full(t.size, 0.01), ref, 50.0)
    assert not est.ok and "does not cover" in est.reason


def test_readings_past_the_reference_end_are_left_out_not_fatal():
    ref = _track(duration_s=10)  # samples up to 9.9 s
    t = np.arange(8.0, 10.5, 0.1)
    est = estimate_at_instant(t, 5.0 + 0.7 * t, np.full(t.size, 0.001), ref, 9.5)
    assert est.ok and est.n_used == np.count_nonzero(t <= 9.9 + 1e-9) == 20
    assert abs(est.volume_l - (5.0 + 0.7 * 9.5)) < 1e-9  # noise-free readings: the exact value


def test_stalled_register_fails_track_check():
    ref = _track()
    t_all = np.arange(0.0, 60.0, 0.1)
    truth = 100 + ref.volume_at(t_all)
    u = np.full(t_all.size, 0.003)
    start = estimate_at_instant(t_all[:50], truth[:50], u[:50], ref, 2.5)
    stop = estimate_at_instant(t_all[-50:], truth[-50:], u[-50:], ref, 57.5)
    good = check_track(t_all, truth, u, ref, start, stop, 2.5, 57.5)
    assert good.ok and good.n_outliers == 0
    stalled = truth.copy()
    stalled[(t_all > 20) & (t_all < 40)] = truth[t_all <= 20][-1]
    bad = check_track(t_all, stalled, u, ref, start, stop, 2.5, 57.5)
    assert not bad.ok
    assert "left the reference line" in bad.reason


def test_select_frames_reads_windows_and_sparse_track_only():
    from meterbench.verify.water_meter import ReadingOptions, select_frames

    times = np.arange(0.0, 100.0, 0.1)
    options = ReadingOptions(window_before_s=2.0, window_after_s=2.0, stop_after_s=0.5, track_interval_s=5.0)
    chosen = select_frames(times, 20.0, 80.0, options)
    picked = times[chosen]
    assert picked.min() >= 18.0 - 1e-9 and picked.max() <= 80.5 + 1e-9
    assert np.all(np.diff(chosen) > 0)
    # windows: 41 + 26 frames, plus 12 sparse frames, one of which (at 20 s) falls inside a window
    assert chosen.size == 78
    every = select_frames(times, 20.0, 80.0, ReadingOptions(every_frame=True, window_before_s=2.0))
    assert every.size == np.count_nonzero((times >= 18.0) & (times <= 80.5))


def test_finest_usable_element_follows_flow():
    from types import SimpleNamespace

    from meterbench.verify.water_meter import finest_usable_element

    elements = [SimpleNamespace(litres_per_turn=v) for v in (1e4, 1e3, 100.0, 10.0, 1.0)]
    # 0.69 L/s at 10 fps: the 1 L dial turns 0.069 turn per frame (usable at 0.12)
    assert finest_usable_element(elements, 0.69, 10.0, 0.12) == 4
    # 7 L/s: the 1 L dial turns 0.7 per frame, the 10 L dial 0.07
    assert finest_usable_element(elements, 7.0, 10.0, 0.12) == 3


def test_fast_cameras_are_thinned_to_the_read_rate():
    from meterbench.verify.water_meter import ReadingOptions, select_frames

    options = ReadingOptions(window_before_s=2.0, window_after_s=2.0, stop_after_s=0.5, track_interval_s=1e9)
    at_10 = select_frames(np.arange(0.0, 100.0, 0.1), 20.0, 80.0, options)
    at_30 = select_frames(np.arange(0.0, 100.0, 1 / 30), 20.0, 80.0, options)
    assert (at_10.size, at_30.size) == (67, 66)  # the same work whatever the camera's frame rate


def test_a_camera_without_frames_selects_none():
    """A camera whose CSV holds only its header: no frames to read (was "argmin of an empty sequence")."""
    from meterbench.verify.water_meter import ReadingOptions, select_frames

    for options in (ReadingOptions(), ReadingOptions(every_frame=True)):
        chosen = select_frames(np.zeros(0), 20.0, 80.0, options)
        assert chosen.dtype == np.int64 and chosen.size == 0
