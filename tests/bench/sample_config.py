"""The shipped simulated bench config (samples/sim-bench.toml) cut to one test point, for bench tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "samples" / "sim-bench.toml"


def q3_point(volume_l: float) -> str:
    """A test plan of one Q3 point (2.4 m³/h, ±5 % flow window) of ``volume_l`` litres."""
    return f'[[test_plan.points]]\nname = "Q3"\nflow_rate_m3h = 2.4\nvolume_l = {volume_l}\nwindow_pct = 5.0\n'


def sample_config(tmp_path: Path, replacements: dict[str, str] | None = None, points: str = q3_point(5.0)) -> Path:
    """``tmp_path/bench.toml``: the sample with ``points`` as its test plan and each ``old -> new``
    replacement made (each ``old`` must be in the sample: a test never edits a line that is not there)."""
    text = SAMPLE.read_text().split("[[test_plan.points]]")[0] + points
    for old, new in (replacements or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path
