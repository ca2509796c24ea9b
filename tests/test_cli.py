"""The command line: exit statuses, one-line user errors, tracebacks for bugs, help, `run --out` checks."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meterbench import cli
from meterbench.errors import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, SessionError
from meterbench.sim import PROFILES
from meterbench.verify import summary_lines

TANK_SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "tank-sim-seed2"


def meterbench(*args: str) -> subprocess.CompletedProcess:
    """`python -m meterbench ARGS` as a user runs it (no terminal: no progress bars)."""
    return subprocess.run(
        [sys.executable, "-m", "meterbench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_run_prints_its_verdict_and_a_summary_that_matches_the_report(tmp_path):
    out = tmp_path / "out"
    done = meterbench("run", str(TANK_SAMPLE), "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert done.stdout == f"{report['session']}: {report['verdict']} -> {out / 'report.json'}\n"
    expected = summary_lines(report)
    assert done.stderr.splitlines()[-len(expected) :] == expected
    assert expected[1].startswith(f"  tank T1: {report['instruments'][0]['verdict']} (R1 ")
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("existing", ["report.json", "report.html"])
def test_run_never_overwrites_a_report_and_says_so_before_any_work(tmp_path, existing):
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_text("the first run's report\n")
    done = meterbench("run", str(TANK_SAMPLE), "--out", str(out))
    assert done.returncode == EXIT_USER_ERROR
    assert done.stderr == (
        f"meterbench run: --out {out}: already holds {existing}; nothing is ever overwritten, choose a new folder\n"
    )
    assert done.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == [existing]
    assert (out / existing).read_text() == "the first run's report\n"


def test_run_refuses_an_out_that_is_a_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("x")
    done = meterbench("run", str(TANK_SAMPLE), "--out", str(target))
    assert (done.returncode, done.stderr) == (
        EXIT_USER_ERROR,
        f"meterbench run: --out {target}: is a file, expected a folder for the reports\n",
    )
    assert target.read_text() == "x"


def test_run_refuses_an_out_below_a_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("x")
    done = meterbench("run", str(TANK_SAMPLE), "--out", str(target / "reports"))
    assert (done.returncode, done.stderr) == (
        EXIT_USER_ERROR,
        f"meterbench run: --out {target / 'reports'}: {target} is a file, so the folder cannot be created\n",
    )


def test_run_refuses_an_out_inside_the_session(tmp_path):
    session = tmp_path / "session"
    shutil.copytree(TANK_SAMPLE, session)
    before = sorted(p.relative_to(session) for p in session.rglob("*"))
    done = meterbench("run", str(session), "--out", str(session / "reports"))
    assert (done.returncode, done.stderr) == (
        EXIT_USER_ERROR,
        f"meterbench run: --out {session / 'reports'}: inside the session folder {session}; "
        f"a session is not written to, choose a folder outside it\n",
    )
    assert sorted(p.relative_to(session) for p in session.rglob("*")) == before


def test_run_refuses_an_unwritable_out_before_any_work(tmp_path):
    if os.geteuid() == 0:  # root writes through file modes; sysfs refuses to create a file even for root
        parent = Path("/sys")
        expected_reason = "Permission denied"
    else:
        parent = tmp_path / "read-only"
        parent.mkdir()
        parent.chmod(0o555)
        expected_reason = "Permission denied"
    out = parent / "meterbench-reports"
    done = meterbench("run", str(TANK_SAMPLE), "--out", str(out))
    assert (done.returncode, done.stderr) == (
        EXIT_USER_ERROR,
        f"meterbench run: --out {out}: cannot write in {parent} ({expected_reason})\n",
    )


def test_a_bad_option_value_is_one_line_and_exit_2(tmp_path):
    done = meterbench("simulate", "water-meter", "--out", str(tmp_path / "s"), "--profile", "nope")
    assert (done.returncode, done.stderr) == (
        EXIT_USER_ERROR,
        f"meterbench simulate: --profile: expected one of {', '.join(PROFILES)}, got 'nope'\n",
    )
    assert not (tmp_path / "s").exists()
    done = meterbench("digits", "a.png", "--batch-size", "0")
    assert done.returncode == EXIT_USER_ERROR
    assert (
        done.stderr.splitlines()[-1]
        == "meterbench digits: error: argument --batch-size: expected an integer >= 1, got '0'"
    )


def test_a_missing_session_is_a_one_line_user_error(tmp_path):
    done = meterbench("run", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "out"))
    assert done.returncode == EXIT_USER_ERROR
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"meterbench run: {tmp_path / 'nothing-here'}")
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- in process: what each kind of failure gives


def _run_raising(monkeypatch, capsys, tmp_path, exc: BaseException) -> tuple[int, str]:
    """`meterbench run` whose verification raises ``exc`` (one function replaced; the command line is real)."""
    import meterbench.verify

    def verification_that_fails(session_dir, out_dir, *args, **kwargs):
        raise exc

    monkeypatch.setattr(meterbench.verify, "run_session", verification_that_fails)
    status = cli.main(["run", str(TANK_SAMPLE), "--out", str(tmp_path / "out")])
    return status, capsys.readouterr().err


def test_an_internal_error_prints_its_traceback_and_exits_3(monkeypatch, capsys, tmp_path):
    status, err = _run_raising(monkeypatch, capsys, tmp_path, ValueError("operands could not be broadcast"))
    assert status == EXIT_INTERNAL_ERROR == 3
    lines = err.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "in verification_that_fails" in err
    assert lines[-2] == "ValueError: operands could not be broadcast"
    assert lines[-1] == (
        "meterbench run: internal error (a bug in meterbench, not in your input); "
        "please report it with the traceback above"
    )


def test_a_key_error_is_a_bug_too(monkeypatch, capsys, tmp_path):
    status, err = _run_raising(monkeypatch, capsys, tmp_path, KeyError("points"))
    assert status == EXIT_INTERNAL_ERROR
    assert "KeyError: 'points'" in err.splitlines()


def test_a_user_error_is_one_line_per_problem_and_exits_2(monkeypatch, capsys, tmp_path):
    problems = ["session.json: bench_kind: expected 'water-meter' or 'tank', got 'x'", "session.json: cameras: missing"]
    status, err = _run_raising(monkeypatch, capsys, tmp_path, SessionError(problems))
    assert status == EXIT_USER_ERROR == 2
    assert err == "".join(f"meterbench run: {p}\n" for p in problems)


def test_an_os_error_names_the_file(monkeypatch, capsys, tmp_path):
    status, err = _run_raising(
        monkeypatch, capsys, tmp_path, FileNotFoundError(2, "No such file or directory", "cameras/cam-T1.csv")
    )
    assert (status, err) == (EXIT_USER_ERROR, "meterbench run: cameras/cam-T1.csv: No such file or directory\n")


def test_ctrl_c_exits_130(monkeypatch, capsys, tmp_path):
    status, err = _run_raising(monkeypatch, capsys, tmp_path, KeyboardInterrupt())
    assert (status, err) == (130, "meterbench run: interrupted\n")


# ---------------------------------------------------------------- help


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_and_argument_has_a_help_line_and_shows_its_default():
    parser = cli.build_parser()
    commands = _subparsers(parser)
    assert set(commands) >= {"digits", "dials", "simulate", "run", "bench", "batch", "doctor"}
    (subparsers_action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert all(choice.help for choice in subparsers_action._choices_actions)
    for name, command in {"meterbench": parser, **commands}.items():
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, (name, action.dest)
            has_default = action.option_strings and not action.required and action.default is not None
            if has_default:
                shown = f"(default: {action.default})"
                assert shown in " ".join(text.split()), (name, action.dest, shown)
    assert "(default: None)" not in parser.format_help() + "".join(c.format_help() for c in commands.values())


def test_run_and_batch_pass_count_unread_turns_as_a_reading_option_and_default_to_inconclusive():
    from meterbench.cli import _reading_options, build_parser
    from meterbench.verify.water_meter import ReadingOptions

    parser = build_parser()
    for command in ("run", "batch"):
        given = parser.parse_args([command, "s", "--out", "o", "--count-unread-turns"])
        assert _reading_options(given) == ReadingOptions(count_unread_turns=True)
        assert _reading_options(parser.parse_args([command, "s", "--out", "o"])) is None  # the defaults
    assert ReadingOptions().count_unread_turns is False


def test_help_of_run_shows_the_defaults_on_the_real_command_line():
    done = meterbench("simulate", "--help")
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    for shown in ("--seed SEED random seed", "(default: 0)", "(default: 3)", "(default: 10.0)", "(default: standard)"):
        assert shown in flat


def _register_photos(tmp_path: Path) -> tuple[Path, Path, dict[str, float]]:
    """An ArUco layout file, a marker-free one (reference photo beside it) and photos of each
    register at known volumes (L): {photo path: volume}."""
    from dataclasses import replace

    import cv2
    import numpy as np

    from meterbench.sim.markerless import PlateMotion, frontal_camera, reference_layout, reference_photo
    from meterbench.sim.register_render import RegisterRenderer
    from meterbench.vision import RegisterLayout, default_register_layout, positions_from_volume

    rng = np.random.default_rng(5)
    plate_dict = default_register_layout("dials")
    plate = RegisterLayout.from_dict(plate_dict)
    aruco = tmp_path / "aruco.json"
    aruco.write_text(json.dumps(plate_dict))
    camera = replace(frontal_camera(rng, plate.plate_size_px), shake_px=0.0, shake_deg=0.0)
    photo = reference_photo(plate, camera, positions_from_volume(plate, 500.0), rng, label="X", red_wheel_style="red")
    cv2.imwrite(str(tmp_path / "reference.png"), photo)
    marker_free = tmp_path / "markerless.json"
    marker_free.write_text(json.dumps(reference_layout(plate, camera, "reference.png")))
    volumes = {}
    centre = tuple(np.array(camera.plate_corners_px).mean(axis=0))
    for name, markers, volume, shift in (("a", True, 1234.56, 0.0), ("b", False, 4321.09, 12.0)):
        renderer = RegisterRenderer(plate, rng=rng, camera=camera, label="X", red_wheel_style="red", markers=markers)
        motion = PlateMotion(centre, (shift, -shift / 2), 2.0 if shift else 0.0, (0.0, 0.0), 0.0, 1.0).matrix(0.0)
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), renderer.render(positions_from_volume(plate, volume), plate_motion=motion))
        volumes[str(path)] = volume
    return aruco, marker_free, volumes


@pytest.mark.slow
def test_read_prints_per_photo_the_volume_and_each_element_with_either_kind_of_layout(tmp_path):
    aruco, marker_free, volumes = _register_photos(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    for layout, photo in ((aruco, tmp_path / "a.png"), (marker_free, tmp_path / "b.png")):
        done = meterbench("read", str(photo), str(tmp_path / "broken.png"), "--layout", str(layout), "--json")
        assert done.returncode == 0, done.stderr
        good, broken = (json.loads(line) for line in done.stdout.splitlines())
        assert set(good) == {"path", "ok", "volume_l", "reason", "elements"}
        assert good["path"] == str(photo) and good["ok"] and good["reason"] == ""
        assert abs(good["volume_l"] - volumes[str(photo)]) <= 0.1  # the finest division of the "dials" register
        assert [e["name"] for e in good["elements"]][-1] == "Lx0.1"
        assert all(e["readable"] and 0 <= e["value"] < 10 and 0 < e["confidence"] <= 1 for e in good["elements"])
        assert not broken["ok"] and broken["volume_l"] is None and "not a readable image" in broken["reason"]
        assert all(e["value"] is None and not e["readable"] for e in broken["elements"])


def test_read_overlay_draws_each_photo_with_its_readings_and_refuses_clashing_names(tmp_path):
    """A real photo read with its hand-checked layout: the overlay is the photo with each element
    outlined (green: readable) where the alignment put it; two photos of one name are refused."""
    import shutil

    import cv2
    import numpy as np

    from tests.vision.test_real_photos import PHOTOS, hand_layout

    name = "zr-2019-12-17.jpg"
    photo = json.loads((PHOTOS / "boxes.json").read_text())["photos"][name]
    layout = hand_layout(name, photo)
    shutil.copyfile(PHOTOS / name, tmp_path / name)
    (tmp_path / "layout.json").write_text(json.dumps(layout.to_dict()))
    layout_file, overlay = str(tmp_path / "layout.json"), str(tmp_path / "ov")
    done = meterbench("read", str(tmp_path / name), "--layout", layout_file, "--overlay", overlay)
    assert done.returncode == 0, done.stderr
    assert abs(float(done.stdout.split("\t")[1]) - 422064.75) <= 0.05  # the hand reading (readings.json)
    drawn, image = cv2.imread(str(tmp_path / "ov" / "zr-2019-12-17-read.png")), cv2.imread(str(PHOTOS / name))
    assert drawn.shape == image.shape
    changed = np.any(drawn != image, axis=2)
    green = (drawn[:, :, 1] >= 180) & (drawn[:, :, 0] < 60) & (drawn[:, :, 2] < 60)
    for element in layout.elements:  # every element's outline is drawn green, on its box edge
        x, y, w, h = (int(round(v)) for v in element.box_px)
        band = green[max(y - 8, 0) : y + h + 8, max(x - 8, 0) : x + w + 8]
        assert band.sum() > w, element.name
    assert changed[:30, :200].any()  # the volume on top
    other = tmp_path / "b"
    other.mkdir()
    shutil.copyfile(PHOTOS / name, other / name)
    clash = meterbench("read", str(tmp_path / name), str(other / name), "--layout", layout_file, "--overlay", overlay)
    assert clash.returncode == 2
    expected = "meterbench read: --overlay: expected photos with distinct names, got 'zr-2019-12-17' twice"
    assert clash.stderr.strip() == expected


def test_read_refuses_a_layout_with_markers_and_reference_naming_file_and_field(tmp_path):
    aruco, marker_free, _ = _register_photos(tmp_path)
    both = json.loads(aruco.read_text()) | {"reference": {"image": "reference.png"}}
    bad = tmp_path / "both.json"
    bad.write_text(json.dumps(both))
    done = meterbench("read", str(tmp_path / "a.png"), "--layout", str(bad))
    assert done.returncode == EXIT_USER_ERROR and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"meterbench read: {bad}: register layout: register: expected either 'markers' or 'reference', got both"
    ]
