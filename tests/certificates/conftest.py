"""Fixtures for the certificate tests: a lab (key pair + LAB.toml naming its fingerprint) and a verified run.

The [cert] extra (cryptography, segno, reportlab, pypdf) and a CJK TrueType font (Debian
fonts-arphic-uming) are needed: skipped where missing, a failure under CI (which installs both).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterbench.certificates import find_cjk_font, generate_keys
from meterbench.errors import ConfigError
from tests.conftest import require_module

REPO = Path(__file__).resolve().parents[2]
SAMPLE_LAB = REPO / "samples" / "LAB.toml"
WATER_SESSION = REPO / "samples" / "water-meter-short"
TANK_SESSION = REPO / "samples" / "tank-sim-seed2"
PLACEHOLDER = "00000000000000000000000000000000"


def require_cert() -> None:
    """Call at the top of each test module: skips it without the [cert] extra or a CJK font, fails under CI.

    (Not done here: a skip raised while pytest imports a conftest would abort the whole run.)"""
    for module in ("cryptography", "segno", "reportlab", "pypdf"):
        require_module(module, "cert")
    try:
        find_cjk_font()
    except ConfigError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI installs fonts-arphic-uming)", pytrace=False)
        pytest.skip(str(exc), allow_module_level=True)


@dataclass
class LabFixture:
    """A lab in a temporary folder: keys/lab.key, keys/lab.pub, LAB.toml, its register LAB-records/."""

    folder: Path
    key: Path
    pub: Path
    toml: Path
    fingerprint: str

    @property
    def register(self) -> Path:
        return self.folder / "LAB-records"

    def write_toml(self, text: str) -> Path:
        self.toml.write_text(text.replace(PLACEHOLDER, self.fingerprint), encoding="utf-8")
        return self.toml


def make_lab(folder: Path) -> LabFixture:
    """A new key pair in folder/keys and the sample LAB.toml naming its fingerprint (no register yet)."""
    public = generate_keys(folder / "keys")
    fixture = LabFixture(
        folder, folder / "keys/lab.key", folder / "keys/lab.pub", folder / "LAB.toml", public.fingerprint
    )
    fixture.write_toml(SAMPLE_LAB.read_text(encoding="utf-8"))
    return fixture


@pytest.fixture
def lab(tmp_path: Path) -> LabFixture:
    return make_lab(tmp_path / "lab")


def _run(session: Path, out: Path) -> Path:
    from meterbench.verify import run_session

    run_session(session, out)
    return out


@pytest.fixture(scope="session")
def water_run_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`meterbench run` of the README's simulated water-meter session (2 meters: one pass, one fail), once."""
    return _run(WATER_SESSION, tmp_path_factory.mktemp("water-run") / "run")


@pytest.fixture(scope="session")
def tank_run_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(TANK_SESSION, tmp_path_factory.mktemp("tank-run") / "run")


@pytest.fixture
def water_run(water_run_master: Path, tmp_path: Path) -> Path:
    """A private copy of the water-meter run folder (report.json, report.html)."""
    return Path(shutil.copytree(water_run_master, tmp_path / "run"))


@pytest.fixture
def tank_run(tank_run_master: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tank_run_master, tmp_path / "tank-run"))


def edit_report(run: Path, change) -> None:
    """Apply ``change(report dict)`` to run/report.json and write it back."""
    path = run / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    change(report)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
