"""Drops near a dwell limit (guard band on dwell) and the 500-impact benchmark's population."""

import math

import pytest

from meterbench.sim import SimDrop, simulate_helmet
from meterbench.verify import verify_helmet_session


def _duration_ms(peak_g: float, level_g: float, dwell_ms: float) -> float:
    return dwell_ms / (1 - 2 / math.pi * math.asin(level_g / peak_g))


def test_a_dwell_within_the_guard_band_of_its_limit_is_inconclusive(tmp_path):
    drops = [
        SimDrop("H1", "a", 300.0, _duration_ms(300.0, 200.0, 2.0)),  # 200 g dwell at its 2 ms limit
        SimDrop("H1", "b", 300.0, _duration_ms(300.0, 200.0, 1.6)),  # 20 % under
        SimDrop("H1", "c", 300.0, _duration_ms(300.0, 200.0, 2.4)),  # 20 % over
    ]
    report = verify_helmet_session(simulate_helmet(tmp_path / "s", seed=4, drops=drops))
    points = {p["name"]: p for p in report["instruments"][0]["points"]}
    assert points["H1-a"]["verdict"] == "inconclusive"
    assert points["H1-a"]["reason"].startswith("within U of the limit: dwell_200_ms;")
    assert points["H1-a"]["details"]["dwell_ms"]["200"] == pytest.approx(2.0, abs=0.02)
    assert points["H1-b"]["verdict"] == "pass" and points["H1-c"]["verdict"] == "fail"
    assert points["H1-c"]["reason"].startswith("beyond limit + U: dwell_200_ms;")


def test_benchmark_population_has_500_impacts_with_each_limit_approached():
    import numpy as np

    from benchmarks.helmet import fmvss_population, r22_population

    rng = np.random.default_rng(0)
    fmvss, r22 = fmvss_population(rng), r22_population(rng)
    assert len(fmvss) + len(r22) >= 500
    groups = {g for g, _ in fmvss + r22}
    assert {"peak ~400 g", "dwell200 ~2 ms", "dwell150 ~4 ms", "HIC ~2400", "peak ~275 g", "timer > 4 min"} <= groups
    near_peak = [d.peak_g for g, d in fmvss if g == "peak ~400 g"]
    assert len(near_peak) == 80 and all(abs(p / 401.0 - 1) <= 0.02 for p in near_peak)
    assert all(5.8 <= d.velocity_m_s <= 6.2 for g, d in fmvss if g == "broad")
    assert all(d.out_of_chamber_s > 240 for g, d in fmvss if g == "timer > 4 min")


def test_a_model_passes_only_with_its_full_test_programme(tmp_path):
    sites = ("front", "rear", "left", "right")
    full = [SimDrop("H1", site, 300.0 + 5 * k, 2.5) for site in sites for k in range(2)]  # 4 sites x 2
    short = [SimDrop("H2", site, 300.0, 2.5, model="SIM-B") for site in sites]  # 4 sites x 1
    report = verify_helmet_session(simulate_helmet(tmp_path / "s", seed=1, drops=full + short))
    assert {h["id"]: h["verdict"] for h in report["instruments"]} == {"H1": "pass", "H2": "pass"}
    models = {m["model"]: m for m in report["helmet_models"]}
    assert models["SIM-FF1"]["verdict"] == "pass" and models["SIM-FF1"]["programme_gaps"] == []
    assert models["SIM-B"]["verdict"] == "inconclusive"
    assert models["SIM-B"]["reason"] == (
        "every impact passes, but H2: programme incomplete: 4 impacts at 4 site(s), 0 with 2; "
        "the profile asks 4 sites x 2 impacts"
    )
