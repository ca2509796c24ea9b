"""The live view served by `meterbench replay`: /events (SSE), /api/state, and both pages in headless Chromium.

One replay of the tank sample (a `meterbench replay` subprocess on a free loopback port) serves the whole
module; the browser test loads `/` and `/display` while it plays and checks the verdicts shown against the
report.json the replay wrote."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.web.sse import CHROMIUM, done, get_json, read_events, require_chromium, start_serving

require_module("fastapi", "web")
require_module("uvicorn", "web")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "tank-sim-seed2"
SPEED = 25.0  # the sample's 316 s of logs play in ~13 s


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """(base URL, report folder, process) of a running replay; stopped at the end of the module."""
    out = tmp_path_factory.mktemp("replay") / "report"
    process, url = start_serving(
        ["replay", str(SAMPLE), "--speed", str(SPEED), "--out", str(out), "--exit-after-s", "40"]
    )
    stream: list[dict] = []
    reader = threading.Thread(target=read_events, args=(url, stream, done, 30), daemon=True)
    reader.start()  # subscribed from the start, while the pages load
    yield url, out, process, (reader, stream)
    process.kill()
    process.communicate()


def _report_points(out: Path) -> dict[tuple[str, str], dict]:
    deadline = time.monotonic() + 20  # written once the replay's verification is done, before the playback
    while not (out / "report.json").exists():
        assert time.monotonic() < deadline, "the replay wrote no report.json"
        time.sleep(0.1)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {(i["id"], p["name"]): p for i in report["instruments"] for p in i["points"]}


@pytest.mark.slow
def test_both_pages_show_the_reports_verdicts_in_headless_chromium(replay, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    url, out, _, _ = replay
    expected = _report_points(out)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            technician = browser.new_page(viewport={"width": 1280, "height": 720})
            display = browser.new_page(viewport={"width": 1280, "height": 720})
            technician.goto(url + "/")
            display.goto(url + "/display")
            for (instrument, point), result in expected.items():
                cell = technician.locator(
                    f'table[data-instrument="{instrument}"] tr[data-point="{point}"] td[data-verdict]'
                )
                cell.filter(has_text=result["verdict"]).wait_for(timeout=30_000)
                row = technician.locator(f'table[data-instrument="{instrument}"] tr[data-point="{point}"]')
                assert f"{result['error_pct']:.3f}" in row.inner_text()
                assert f"{result['mpe_pct']:.2f}" in row.inner_text()
            technician.locator("#verdict").filter(
                has_text=json.loads((out / "report.json").read_text())["verdict"]
            ).wait_for(timeout=30_000)
            last = next(reversed(expected.items()))
            (instrument, point), result = last
            shown = display.locator(f'div[data-instrument="{instrument}"] [data-verdict="{result["verdict"]}"]')
            shown.wait_for(timeout=30_000)
            assert shown.inner_text() == result["verdict"].upper()
            assert display.locator("#point").inner_text() == point
            meter_text = display.locator(f'div[data-instrument="{instrument}"]').inner_text()
            assert "SIM-T-0002" in meter_text
            assert (
                f"{result['indicated_volume']:.3f} L" in meter_text
                and f"{result['reference_volume']:.3f} L" in meter_text
            )
            docs_img = ROOT / "docs" / "img"  # the docs' copies: only when asked (a test run leaves the tree clean)
            to_docs = os.environ.get("MB_DOCS_SCREENSHOTS") == "1"
            for name, page in (("technician", technician), ("display", display)):
                shot = tmp_path / f"live-{name}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 5_000
                if to_docs and name == "technician":  # live-display.png: test_certificate_display.py's, with the QR
                    shutil.copyfile(shot, docs_img / shot.name)
        finally:
            browser.close()


def test_events_start_with_the_state_and_carry_readings_points_and_the_reports_verdicts(replay):
    url, out, _, (reader, events) = replay
    reader.join(35)
    assert events[0]["value"].startswith("text/event-stream")
    events = events[1:]
    assert done(events), f"the stream did not reach the end: {[e['type'] for e in events][-10:]}"
    assert events[0]["type"] == "state"
    assert all(isinstance(e["type"], str) for e in events)
    state = {k: v for e in events if e["type"] == "state" for k, v in e.items()}
    assert state["session"] == "sim-tank-seed2"
    tank_type = "20 L standard capacity measure, graduated neck with gauge glass"
    assert state["instruments"] == [
        {"id": "T1", "kind": "tank", "serial": "SIM-T-0002", "type": tank_type, "camera": "cam-T1"}
    ]
    verdicts = state["verdicts"] + [e for e in events if e["type"] == "verdict"]
    expected = _report_points(out)
    assert {(v["instrument"], v["point"]) for v in verdicts} == set(expected)
    for v in verdicts:
        point = expected[v["instrument"], v["point"]]
        for key in ("error_pct", "mpe_pct", "uncertainty_pct", "verdict", "reference_volume", "indicated_volume"):
            assert v[key] == point[key], key
    readings = [e for e in events if e["type"] == "reading" and e["reference_volume_l"] is not None]
    assert readings, "no reference reading inside a point"
    assert all(0 <= r["reference_volume_l"] <= 20.1 for r in readings)
    phases = [(e["point"], e["phase"]) for e in events if e["type"] == "point"]
    if state["verdicts"] == []:  # connected before the first point: saw every start and stop
        assert phases == [("R1", "running"), ("R1", "stopped"), ("R2", "running"), ("R2", "stopped")]


def test_api_state_holds_the_verdicts_of_report_json(replay):
    url, out, _, _ = replay
    deadline = time.monotonic() + 30
    while (state := get_json(url + "/api/state")).get("phase") != "done":
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["type"] == "state"
    assert state["verdict"] == json.loads((out / "report.json").read_text(encoding="utf-8"))["verdict"]
    got = {
        (v["instrument"], v["point"]): (v["error_pct"], v["mpe_pct"], v["uncertainty_pct"], v["verdict"])
        for v in state["verdicts"]
    }
    expected = {
        k: (p["error_pct"], p["mpe_pct"], p["uncertainty_pct"], p["verdict"]) for k, p in _report_points(out).items()
    }
    assert got == expected  # fmt: skip


def test_the_pages_are_read_only(replay):
    url, _, _, _ = replay
    for path in ("/", "/display", "/api/state", "/events"):
        request = urllib.request.Request(url + path, data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405, path


def test_a_non_loopback_bind_warns_and_a_bad_bind_is_refused(capsys):
    from meterbench.errors import ConfigError
    from meterbench.web import EventPublisher
    from meterbench.web.server import parse_bind, start_server

    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ConfigError, match="--serve: expected HOST:PORT"):
        parse_bind("8080")
    server = start_server(EventPublisher(), "0.0.0.0", 0)
    try:
        assert "reachable from the network" in capsys.readouterr().err
        assert get_json(f"http://127.0.0.1:{server.port}/api/state") == {"type": "state", "verdicts": []}
    finally:
        server.stop()
    server = start_server(EventPublisher(), "127.0.0.1", 0)
    server.stop()
    assert capsys.readouterr().err == ""


def test_a_non_finite_number_is_sent_as_null_and_the_server_stops_with_a_client_connected(capsys):
    from meterbench.web import EventPublisher
    from meterbench.web.server import start_server

    publisher = EventPublisher()
    publisher.publish({"type": "state", "session": "s1", "flow_m3h": float("nan")})
    server = start_server(publisher, "127.0.0.1", 0)
    try:
        events: list[dict] = []
        with urllib.request.urlopen(server.url + "/events", timeout=5) as response:
            events.append(json.loads(response.readline().decode("utf-8")[len("data: ") :]))
            publisher.publish({"type": "reading", "totaliser_l": float("inf"), "t_s": 1.5})
            response.readline()  # the blank line closing the first event
            events.append(json.loads(response.readline().decode("utf-8")[len("data: ") :]))
            assert get_json(server.url + "/api/state")["flow_m3h"] is None
            server.stop()  # while this client is still connected
        assert events == [
            {"type": "state", "session": "s1", "flow_m3h": None, "verdicts": []},
            {"type": "reading", "totaliser_l": None, "t_s": 1.5},
        ]
        assert not server._thread.is_alive()
    finally:
        server.stop()
    assert "Exception" not in capsys.readouterr().err


def test_replay_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    from meterbench.cli import main

    assert main(["replay", str(SAMPLE), "--serve", "8080"]) == 2
    assert capsys.readouterr().err == (
        "meterbench replay: --serve: expected HOST:PORT (e.g. 127.0.0.1:8080), got '8080'\n"
    )
    (tmp_path / "report.json").write_text("{}", encoding="utf-8")
    assert main(["replay", str(SAMPLE), "--serve", "127.0.0.1:0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "already holds report.json" in err[0]
    assert (tmp_path / "report.json").read_text(encoding="utf-8") == "{}"
