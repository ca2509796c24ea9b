"""`meterbench replay --certificates DIR`: the run's certificate (number, verification code, QR) on the live view.

The tank sample is verified and certified (the certificate tests' lab fixture), then replayed with
``--certificates``; /events and /api/state must carry the certificate's code, and /display in headless
Chromium must show it with a QR code whose SVG is segno's for that exact code."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from meterbench.errors import ConfigError
from tests.certificates.conftest import TANK_SESSION, make_lab, require_cert
from tests.certificates.test_certify import TANK_BENCH
from tests.conftest import require_module
from tests.web.sse import CHROMIUM, done, read_events, require_chromium, start_serving

require_module("fastapi", "web")
require_module("uvicorn", "web")
require_cert()

ROOT = Path(__file__).resolve().parents[2]
SPEED = 60.0  # the sample's 316 s of logs play in ~5 s


def _segno_path(code: str) -> str:
    """The ``d`` of the dark modules' path of segno's QR for ``code`` (the certificate's options: error M, no micro)."""
    import segno

    svg = segno.make(code, error="m", micro=False).svg_inline(scale=6)
    (d,) = re.findall(r'class="qrline"[^>]* d="([^"]+)"', svg)
    return d


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    """(certificate folder, the record of the tank run's one certificate) of a fresh lab."""
    from meterbench.certificates import certify_run
    from meterbench.verify import run_session

    folder = tmp_path_factory.mktemp("certified")
    lab = make_lab(folder / "lab")
    lab.write_toml(lab.toml.read_text(encoding="utf-8") + TANK_BENCH)  # the bench the tank sample records
    run_session(TANK_SESSION, folder / "run")
    [issued] = certify_run(
        folder / "run", lab.key, lab.toml, folder / "certs", technician_id="tech-01", session_dir=TANK_SESSION
    )
    record = json.loads((folder / "certs" / f"certificate-{issued.number}.json").read_text(encoding="utf-8"))
    assert record["verification_code"] == issued.verification_code
    return folder / "certs", record


@pytest.mark.slow
def test_replay_publishes_the_certificate_and_the_display_shows_its_code_and_qr(certified, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    certs, record = certified
    code, number = record["verification_code"], record["certificate"]["number"]
    process, url = start_serving(
        ["replay", str(TANK_SESSION), "--speed", str(SPEED), "--out", str(tmp_path / "report"),
         "--certificates", str(certs), "--exit-after-s", "30"]
    )  # fmt: skip
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                display = browser.new_page(viewport={"width": 1280, "height": 720})
                display.goto(url + "/display")
                events: list[dict] = []
                read_events(url, events, done, 30)  # from the snapshot on, until the final state
                shown = display.locator('div[data-instrument="T1"] [data-verification-code]')
                shown.wait_for(timeout=20_000)
                assert shown.inner_text() == code
                assert display.locator('div[data-instrument="T1"] [data-verdict]').inner_text() == "FAIL"
                svg = display.locator('div[data-instrument="T1"] .qr svg')
                assert svg.count() == 1 and svg.get_attribute("class") == "segno"
                assert svg.locator("path.qrline").get_attribute("d") == _segno_path(code)
                html = (certs / f"certificate-{number}.html").read_text(encoding="utf-8")  # the certificate's own QR
                assert re.findall(r'class="qrline"[^>]* d="([^"]+)"', html) == [_segno_path(code)]
                assert display.locator(f'[data-certificate="{number}"]').count() == 1
                shot = tmp_path / "live-display.png"
                display.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 5_000
                if os.environ.get("MB_DOCS_SCREENSHOTS") == "1":  # the docs' copy: only when asked
                    shutil.copyfile(shot, ROOT / "docs" / "img" / shot.name)
            finally:
                browser.close()
    finally:
        process.kill()
        process.communicate()
    # the stream: the certificate once, after the instrument's verdicts, before the final state
    kinds = [e["type"] for e in events]
    cert_events = [e for e in events if e["type"] == "certificate"]
    state = events[1]  # after the content-type entry: the snapshot a new subscriber gets
    if "certificates" in state:  # subscribed after the playback's end
        cert_events = state["certificates"] + cert_events
    else:
        assert kinds.index("certificate") > max(i for i, k in enumerate(kinds) if k == "verdict")
        assert kinds.index("certificate") < len(kinds) - 1 and done(events)
    [event] = cert_events
    assert {k: event[k] for k in ("instrument", "serial", "number", "verification_code", "verdict")} == {
        "instrument": "T1",
        "serial": "SIM-T-0002",
        "number": number,
        "verification_code": code,
        "verdict": record["certificate"]["verdict"],
    }
    assert re.findall(r'class="qrline"[^>]* d="([^"]+)"', event["qr_svg"]) == [_segno_path(code)]
    assert "http" not in event["qr_svg"].replace("http://www.w3.org/2000/svg", "")  # nothing to fetch


def test_a_record_changed_after_sealing_is_refused_in_one_line(certified, tmp_path):
    from meterbench.session import load_session
    from meterbench.web.certificates import certificate_events

    certs, record = certified
    with load_session(TANK_SESSION) as session:
        manifest = session.manifest
    [event] = certificate_events(certs, TANK_SESSION, manifest)
    assert event["verification_code"] == record["verification_code"]
    other = json.loads(json.dumps(manifest))
    other["session_id"] = "another-session"
    assert certificate_events(certs, TANK_SESSION, other) == []  # not this session's certificate
    changed = json.loads(json.dumps(record))
    changed["certificate"]["verdict"] = "pass"
    (tmp_path / "certificate-9.json").write_text(json.dumps(changed), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"certificate-9\.json: not a valid certificate record: verification code"):
        certificate_events(tmp_path, TANK_SESSION, manifest)
    with pytest.raises(ConfigError, match="--certificates: expected a folder"):
        certificate_events(tmp_path / "missing", TANK_SESSION, manifest)
