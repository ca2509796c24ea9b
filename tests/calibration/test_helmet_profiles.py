"""Helmet standard profiles, the guard-band impact decision and the reference-drop rig check."""

import math

import pytest

from meterbench.calibration import (
    PROFILE_NAMES,
    check_reference_drops,
    decide_impact,
    helmet_profile,
    helmet_provenance_notes,
    peak_uncertainty_rel_pct,
)


def test_fmvss_218_limits_are_confirmed_values() -> None:
    profile = helmet_profile("fmvss-218")
    assert profile.peak_max_g.value == 400.0
    assert profile.dwell_limits_ms.value == {"200": 2.0, "150": 4.0}
    assert profile.velocity_window_m_s.value == {"flat": [5.8, 6.2], "hemispherical": [5.0, 5.4]}
    assert profile.unconfirmed() == []


def test_cns_2396_and_r22_are_mem_and_listed_in_notes() -> None:
    assert set(PROFILE_NAMES) == {"fmvss-218", "cns-13371", "cns-2396", "un-r22-06"}
    assert helmet_profile("cns-2396").peak_max_g.provenance == "MEM"
    assert helmet_profile("un-r22-06").hic_max.value == 2400.0
    notes = helmet_provenance_notes()
    assert any(n.startswith("[MEM] helmet.profiles.cns-2396.peak_max_g = 300.0") for n in notes)
    assert not any("fmvss-218.peak_max_g" in n for n in notes)
    assert peak_uncertainty_rel_pct().provenance == "MEM"


def test_override_marks_cfg() -> None:
    profile = helmet_profile("cns-2396", {"profiles": {"cns-2396": {"peak_max_g": 250.0}}})
    assert profile.peak_max_g.value == 250.0 and profile.peak_max_g.provenance == "CFG"


def test_unknown_profile_is_one_line_error() -> None:
    with pytest.raises(ValueError, match="profile: expected one of fmvss-218"):
        helmet_profile("snell")


FMVSS = helmet_profile("fmvss-218")


@pytest.mark.parametrize(
    ("peak", "verdict"),
    [
        (390.0, "pass"),
        (394.0, "pass"),
        (395.0, "inconclusive"),
        (400.0, "inconclusive"),
        (406.0, "inconclusive"),
        (406.2, "fail"),
        (420.0, "fail"),
    ],
)
def test_peak_guard_band_at_1_5_percent(peak: float, verdict: str) -> None:
    # pass needs peak*1.015 <= 400 (peak <= 394.09); fail needs peak*0.985 > 400 (peak > 406.09)
    decision, checks = decide_impact(peak, {"150": 1.0, "200": 0.5}, 0.0, FMVSS, velocity_m_s=6.0, anvil="flat")
    assert decision.verdict == verdict
    assert checks[0].criterion == "peak_g" and checks[0].margin == pytest.approx(400.0 - peak)


def test_dwell_over_limit_fails_and_band_gives_inconclusive() -> None:
    decision, checks = decide_impact(250.0, {"150": 3.55, "200": 2.45}, 2458.0, FMVSS, velocity_m_s=6.0, anvil="flat")
    assert decision.verdict == "fail" and "dwell_200_ms" in decision.reason
    assert [c.verdict for c in checks] == ["pass", "pass", "fail"]
    decision, _ = decide_impact(250.0, {"150": 3.0, "200": 1.98}, 0.0, FMVSS, dwell_ms_bounds={"200": (1.95, 2.02)})
    assert decision.verdict == "inconclusive" and "dwell_200_ms" in decision.reason


def test_velocity_out_of_window_is_inconclusive() -> None:
    decision, checks = decide_impact(200.0, {"150": 1.0, "200": 0.0}, 0.0, FMVSS, velocity_m_s=5.7, anvil="flat")
    assert decision.verdict == "inconclusive" and decision.reason.startswith("velocity out of window: 5.700 m/s")
    assert checks == [] and math.isnan(decision.acceptance_limit_pct)
    with pytest.raises(ValueError, match="anvil: expected one of flat, hemispherical"):
        decide_impact(200.0, {}, 0.0, FMVSS, velocity_m_s=6.0, anvil="kerbstone")


def test_hic_limit_with_band_for_r22() -> None:
    r22 = helmet_profile("un-r22-06")
    assert decide_impact(200.0, {}, 2300.0, r22)[0].verdict == "pass"  # 2300*1.015^2.5 = 2387
    assert decide_impact(200.0, {}, 2390.0, r22)[0].verdict == "inconclusive"
    assert decide_impact(200.0, {}, 2500.0, r22)[0].verdict == "fail"  # 2500*0.985^2.5 = 2407


def test_reference_drops_rig_check() -> None:
    assert check_reference_drops([300, 395, 400, 405, 398, 402])[0] is True
    ok, reason = check_reference_drops([400, 405, 426.0])
    assert not ok and reason == "rig check failed: reference peak(s) 426.0 g not in 380.0-425.0 g"
    ok, reason = check_reference_drops([381.0, 395.0, 402.0])
    assert not ok and reason == "rig check failed: reference spread 21.0 g > 20.0 g"
    assert check_reference_drops([400.0, 401.0])[0] is False


def test_conditioning_timer_voids_an_impact_beyond_the_profiles_limit():
    from meterbench.calibration import conditioning_void_reason

    dot = helmet_profile("fmvss-218")
    assert dot.max_minutes_out_of_chamber.value == 4.0 and dot.max_minutes_out_of_chamber.provenance == "SRC"
    assert conditioning_void_reason("ambient", None, dot) is None
    assert conditioning_void_reason(None, 900.0, dot) is None  # no chamber named: no timer
    assert conditioning_void_reason("hot", 240.0, dot) is None  # exactly 4 min
    assert conditioning_void_reason("hot", 240.6, dot).startswith(
        "void: out of the hot conditioning 4.01 min before the drop > 4 min "
        "(fmvss-218 max_minutes_out_of_chamber [SRC: "
    )
    assert conditioning_void_reason("cold", None, dot) == (
        "void: no conditioning timer (out_of_chamber_s) recorded for a cold-conditioned helmet"
    )
    strict = helmet_profile("fmvss-218", {"profiles": {"fmvss-218": {"max_minutes_out_of_chamber": 3.0}}})
    assert strict.max_minutes_out_of_chamber.provenance == "CFG"
    assert conditioning_void_reason("hot", 180.0, strict) is None
    assert "> 3 min (fmvss-218 max_minutes_out_of_chamber [CFG: " in conditioning_void_reason("hot", 181.0, strict)
