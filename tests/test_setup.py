"""The README's set-up is what CI runs, and it works where pip refuses to install outside a venv."""

from __future__ import annotations

import io
import re
from pathlib import Path

from meterbench.progress import TerminalProgress

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Set-up") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README: no ```sh block under ## Set-up"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_setup_is_two_commands_in_a_venv():
    install, tests = _setup_commands()
    # PEP 668: a stock Debian/Ubuntu refuses pip outside a venv and may have no `python`
    assert "python3 -m venv .venv" in install and ".venv/bin/pip install" in install
    assert re.search(r"(^|[\s;&|])(python|pip) ", install) is None, install
    assert "meterbench run samples/" in install
    assert tests.startswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command_and_fails_on_exit_5():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    _, tests = _setup_commands()
    assert tests in ci.splitlines()
    assert '"$status" -eq 5' in ci


def test_progress_bar_only_on_a_terminal():
    shown, hidden = io.StringIO(), io.StringIO()
    for stream, enabled in ((shown, True), (hidden, None)):  # StringIO is not a terminal
        bar = TerminalProgress("run", "point", stream=stream, enabled=enabled)
        for done in range(1, 5):
            bar(done, 4, f"M1 Q{done}")
    assert hidden.getvalue() == ""
    assert "4/4" in shown.getvalue() and "run" in shown.getvalue()


def test_run_and_simulate_report_their_progress(tmp_path):
    from meterbench.sim import simulate_water_meter
    from meterbench.verify import run_session

    seen: list[tuple[int, int, str]] = []
    # 2 frames/s (10 by default): a fifth of the frames to render and read; some points come out
    # inconclusive, but the progress, one call per meter, is what is tested
    simulate_water_meter(tmp_path / "s", seed=3, meters=2, profile="short", fps=2.0, progress=lambda *a: seen.append(a))
    assert seen == [(0, 2, ""), (1, 2, "meter M1"), (2, 2, "meter M2")]
    seen.clear()
    run_session(tmp_path / "s", tmp_path / "out", progress=lambda *a: seen.append(a))
    assert seen == [(0, 2, ""), (1, 2, "M1"), (2, 2, "M2")]
