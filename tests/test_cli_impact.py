"""`meterbench impact TRACE`: the JSON contract of DESIGN.md "Helmet impact", defaults and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from meterbench import cli
from meterbench.calibration import analyse_impact
from meterbench.errors import EXIT_USER_ERROR

FS = 20_000.0


def _drop(tmp_path, with_time: bool = True):
    t = np.arange(1000) / FS
    pulse = np.where((t >= 0.010) & (t <= 0.016), 250.0 * np.sin(np.pi * (t - 0.010) / 0.006), 0.0)
    path = tmp_path / "drop.csv"
    header = "time_s,ax_g,ay_g,az_g" if with_time else "ax_g,ay_g,az_g"
    rows = [f"{ti:.5f},{0.1 * p:.6f},{0.05 * p:.6f},{p:.6f}" for ti, p in zip(t, pulse, strict=True)]
    if not with_time:
        rows = [row.split(",", 1)[1] for row in rows]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path, np.column_stack([0.1 * pulse, 0.05 * pulse, pulse])


def test_impact_json_as_a_user_runs_it(tmp_path):
    path, accel = _drop(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "meterbench", "impact", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert list(printed) == ["peak_g", "hic", "hic15", "hic36", "dwell_ms", "t_peak_ms"]
    expected = analyse_impact(np.round(accel, 6), FS, cfc=1000)
    assert printed["peak_g"] == pytest.approx(expected.peak_g, rel=1e-9)
    assert printed["hic"] == pytest.approx(expected.hic, rel=1e-9)
    assert printed["dwell_ms"] == pytest.approx(expected.dwell_ms, rel=1e-9)
    assert printed["hic"] == pytest.approx(2496.6, abs=0.5)  # 250 g x sqrt(1.0125) resultant, 6 ms
    assert printed["t_peak_ms"] == pytest.approx(13.0, abs=0.05)
    assert done.stderr == ""


def test_impact_cfc_none_and_fs_option(tmp_path, capsys):
    path, accel = _drop(tmp_path, with_time=False)
    assert cli.main(["impact", str(path), "--fs", "20000", "--cfc", "none", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["peak_g"] == pytest.approx(float(np.max(np.linalg.norm(np.round(accel, 6), axis=1))), rel=1e-12)
    assert cli.main(["impact", str(path), "--fs", "20000"]) == 0  # text lines
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["peak_g", "hic", "hic15", "hic36", "dwell_ms", "t_peak_ms"]


def test_impact_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    path, _ = _drop(tmp_path, with_time=False)
    assert cli.main(["impact", str(path)]) == EXIT_USER_ERROR  # no time_s and no --fs
    err = capsys.readouterr().err
    assert err == f"meterbench impact: {path}: no time_s column: expected the sample rate (--fs HZ)\n"
    assert cli.main(["impact", str(path), "--fs", "5000"]) == 0  # below 10 x CFC: analysed, warned
    assert "warning: SAE J211 CFC 1000: the sample rate must be at least 10 x CFC" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("accel_g\n1\nnan\n2\n", encoding="utf-8")
    assert cli.main(["impact", str(bad), "--fs", "20000"]) == EXIT_USER_ERROR
    assert capsys.readouterr().err.count("\n") == 1
