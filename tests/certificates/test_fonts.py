"""The PDF font is found at run time; without one certify says so in one line before writing anything."""

from __future__ import annotations

import pytest

from meterbench.certificates import FONT_ENV, certify_run, find_cjk_font
from meterbench.errors import ConfigError

from .conftest import require_cert

require_cert()


def test_without_a_cjk_font_certify_refuses_in_one_line_and_writes_nothing(lab, water_run, monkeypatch, tmp_path):
    path, index = find_cjk_font()
    assert path.is_file() and index >= 0
    monkeypatch.setenv(FONT_ENV, str(tmp_path / "missing.ttf"))
    with pytest.raises(ConfigError) as caught:
        certify_run(water_run, lab.key, lab.toml, technician_id="tech-01")
    assert str(caught.value) == (
        f"no TrueType font with Chinese glyphs found (looked for {tmp_path / 'missing.ttf'}): "
        f"apt-get install -y fonts-arphic-uming, or set {FONT_ENV} to a .ttf/.ttc file"
    )
    assert not lab.register.exists() and not list(water_run.glob("certificate-*"))


def test_the_font_override_is_used_when_it_is_a_truetype_file(monkeypatch):
    path, index = find_cjk_font()
    monkeypatch.setenv(FONT_ENV, str(path))
    assert find_cjk_font() == (path, 0)  # the override's first face
