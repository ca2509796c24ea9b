"""read_trace: impact traces from CSV and NI TDMS files, in g or V, and one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from meterbench.errors import MeterbenchError
from meterbench.session import TraceError, read_trace, write_trace_csv
from tests.conftest import require_module

FS = 20_000.0


def _pulse(n: int = 400) -> np.ndarray:
    t = np.arange(n) / FS
    return np.where(t < 0.006, 250.0 * np.sin(np.pi * t / 0.006), 0.0)


def _write_csv(path, header: str, columns: list[np.ndarray], fmt: str = "{:.9g}") -> None:
    lines = [header] + [",".join(fmt.format(v) for v in row) for row in zip(*columns, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_csv_single_axis_needs_fs(tmp_path):
    path = tmp_path / "drop.csv"
    _write_csv(path, "accel_g", [_pulse()])
    trace = read_trace(path, fs_hz=FS)
    assert trace.accel_g == pytest.approx(_pulse(), abs=1e-6)
    assert (trace.fs_hz, trace.units, trace.source, trace.axes) == (FS, "g", str(path), 1)
    with pytest.raises(TraceError, match=r"drop\.csv: no time_s column: expected the sample rate \(--fs HZ\)"):
        read_trace(path)


def test_csv_time_column_gives_the_rate_and_three_axes(tmp_path):
    path = tmp_path / "tri.csv"
    t = np.arange(400) / FS + 0.125  # the time origin is free: t_peak counts from the first sample
    pulse = _pulse()
    _write_csv(path, "time_s,ax_g,ay_g,az_g", [t, 0.1 * pulse, -0.05 * pulse, pulse], fmt="{:.7f}")
    trace = read_trace(path)
    assert trace.fs_hz == pytest.approx(FS, rel=1e-6)
    assert trace.accel_g.shape == (400, 3) and trace.axes == 3
    assert trace.accel_g[:, 1] == pytest.approx(-0.05 * pulse, abs=1e-6)
    assert read_trace(path, fs_hz=FS).fs_hz == FS
    with pytest.raises(TraceError, match="disagrees with fs 10000 Hz"):
        read_trace(path, fs_hz=10_000.0)


def test_csv_in_volts_with_a_sensitivity(tmp_path):
    path = tmp_path / "volts.csv"
    _write_csv(path, "sample,accel_v", [np.arange(400), _pulse() * 0.010])  # 10 mV/g
    trace = read_trace(path, fs_hz=FS, sensitivity_mv_per_g=10.0)
    assert trace.accel_g == pytest.approx(_pulse(), rel=1e-8)  # 9 significant digits written
    assert (trace.units, trace.sensitivity_mv_per_g) == ("V", 10.0)
    with pytest.raises(TraceError, match=r"columns in V: expected a sensitivity in mV/g \(--sensitivity\)"):
        read_trace(path, fs_hz=FS)
    g_path = tmp_path / "g.csv"
    _write_csv(g_path, "accel_g", [_pulse()])
    with pytest.raises(TraceError, match="sensitivity applies to columns in V"):
        read_trace(g_path, fs_hz=FS, sensitivity_mv_per_g=10.0)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "empty file"),
        ("0.0\n1.0\n2.0\n", "no header line"),
        ("a,b\n1,2\n3,4\n5,6\n", "columns a,b; expected a header line with columns accel_g"),
        ("time_s,ax_g,ay_g\n0,1,2\n", "columns time_s,ax_g,ay_g; expected"),
        ("accel_g\n1\n2\nx\n", "line 4: expected numbers"),
        ("time_s,accel_g\n0,1\n0.00005\n", "line 3: expected 2 comma-separated values, got 1"),
        ("accel_g\n1\nnan\n3\n", "sample 2: expected finite numbers, found NaN"),
        ("accel_g\n1\n2\n", "expected at least 3 samples, got 2"),
        ("time_s,accel_g\n0,1\n0.00005,2\n0.0002,3\n0.00025,4\n", "expected uniform sampling"),
        ("time_s,accel_g\n0,1\n0,2\n0,3\n", "expected increasing times"),
    ],
)
def test_bad_csv_is_one_line_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TraceError) as caught:
        read_trace(path, fs_hz=None if text.startswith("time_s") else FS)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and expected in message
    assert isinstance(caught.value, MeterbenchError)


def test_missing_file_and_bad_parameters(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        read_trace(tmp_path / "absent.csv", fs_hz=FS)
    with pytest.raises(TraceError, match="positive sample rate"):
        read_trace(tmp_path / "absent.csv", fs_hz=0.0)


def test_tdms_named_channels_units_and_rate(tmp_path):
    nptdms = require_module("nptdms", "helmet")
    path = tmp_path / "drop.tdms"
    pulse = _pulse()
    properties = {"wf_increment": 1 / FS, "unit_string": "V"}
    channels = [
        nptdms.ChannelObject("headform", name, (scale * pulse * 0.005).astype(np.float64), properties=properties)
        for name, scale in (("ax_v", 0.1), ("ay_v", 0.05), ("az_v", 1.0))
    ]
    with nptdms.TdmsWriter(path) as writer:
        writer.write_segment([nptdms.GroupObject("headform"), *channels])
    trace = read_trace(path, sensitivity_mv_per_g=5.0)
    assert trace.fs_hz == pytest.approx(FS, rel=1e-12)
    assert trace.accel_g.shape == (400, 3)
    assert trace.accel_g[:, 2] == pytest.approx(pulse, abs=1e-9) and trace.units == "V"


def test_tdms_unnamed_single_channel_uses_its_unit_string(tmp_path):
    nptdms = require_module("nptdms", "helmet")
    path = tmp_path / "plain.tdms"
    channel = nptdms.ChannelObject("Untitled", "Dev1/ai0", _pulse(), properties={"unit_string": "g"})
    with nptdms.TdmsWriter(path) as writer:
        writer.write_segment([channel])
    trace = read_trace(path, fs_hz=FS)
    assert trace.accel_g == pytest.approx(_pulse()) and trace.units == "g"
    two = tmp_path / "two.tdms"
    with nptdms.TdmsWriter(two) as writer:
        writer.write_segment([nptdms.ChannelObject("g", f"ai{i}", _pulse()) for i in range(2)])
    with pytest.raises(TraceError, match="or exactly 1 or 3 channels, found 2: ai0, ai1"):
        read_trace(two, fs_hz=FS)
    broken = tmp_path / "broken.tdms"
    broken.write_bytes(path.read_bytes()[:40])  # cut inside the lead-in / metadata
    with pytest.raises(TraceError, match=r"broken\.tdms: (not a readable TDMS file|.*found 0)"):
        read_trace(broken, fs_hz=FS)


def test_written_trace_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(4)
    tri = np.column_stack([0.1 * _pulse(), -0.05 * _pulse(), _pulse()]) + rng.normal(0, 0.3, (400, 3))
    write_trace_csv(tmp_path / "tri.csv", tri, FS)
    back = read_trace(tmp_path / "tri.csv")
    assert np.array_equal(back.accel_g, tri) and back.fs_hz == pytest.approx(FS, rel=1e-9)
    write_trace_csv(tmp_path / "v.csv", _pulse() * 0.01, FS, units="V")
    assert read_trace(tmp_path / "v.csv", sensitivity_mv_per_g=10.0).accel_g == pytest.approx(_pulse(), rel=1e-12)
    with pytest.raises(TraceError, match="expected \\(N,\\) or \\(N, 3\\) samples"):
        write_trace_csv(tmp_path / "two.csv", tri[:, :2], FS)
    assert not (tmp_path / "two.csv").exists()
