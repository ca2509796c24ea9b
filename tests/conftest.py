"""Shared fixtures: a real Mosquitto broker and real serial pseudo-terminal pairs (socat).

Both binaries come from Debian (``apt-get install -y mosquitto socat``). When one
is missing the fixture fails with that instruction (it never skips silently).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from meterbench.errors import DeviceError
from meterbench.testing import MosquittoBroker, SocatPtyPair


def require_module(name: str, extra: str) -> ModuleType:
    """Import an optional dependency: skipped where it is not installed, a failure under CI (which installs it)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: CI installs the [{extra}] extra", pytrace=False)
        pytest.skip(f"{name} not installed (pip install -e '.[{extra}]')", allow_module_level=True)


def require_varied_renders() -> None:
    """What the simulator's 'varied' register style needs (a Debian TrueType font, Pillow): skipped where
    absent, a CI failure."""
    from meterbench.sim.register_render import truetype_fonts

    if not truetype_fonts():
        if os.environ.get("CI"):
            pytest.fail("no TrueType font under /usr/share/fonts/truetype: CI installs fonts-dejavu-core")
        pytest.skip("no TrueType font installed (apt-get install -y fonts-dejavu-core fonts-liberation)")
    require_module("PIL", "train")


def require_ocr_models() -> None:
    """The PP-OCRv4 ONNX files of rapidocr-onnxruntime (installed --no-deps): skipped where absent, a CI failure."""
    from meterbench.models._ocr import ocr_model_path

    if ocr_model_path() is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("rapidocr-onnxruntime is not installed: CI installs it with --no-deps", pytrace=False)
    pytest.skip("rapidocr-onnxruntime not installed (pip install --no-deps rapidocr-onnxruntime==1.4.4)")


@pytest.fixture
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A fresh broker on a free port of 127.0.0.1 for one test (restartable)."""
    try:
        broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto")).start()
    except DeviceError as exc:
        pytest.fail(f"mosquitto broker fixture: {exc}", pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture
def pty_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocatPtyPair]:
    """A socat pseudo-terminal pair (``pty_pair.a`` <-> ``pty_pair.b``) for one test."""
    try:
        pair = SocatPtyPair(tmp_path_factory.mktemp("pty")).plug()
    except DeviceError as exc:
        pytest.fail(f"socat pty fixture: {exc}", pytrace=False)
    yield pair
    pair.unplug()
