"""Helpers of the live-view tests: a free loopback port, a JSON GET, the /events stream read with a plain client."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_module

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict:
    """GET ``url`` and parse its JSON body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def start_serving(args: list[str], timeout_s: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start ``meterbench ARGS --serve 127.0.0.1:PORT`` (a replay or a bench); return (process, base URL)
    once /api/state answers. Fails the test, with the process's stderr, if it exits or does not serve."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "meterbench.cli", *args, "--serve", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get_json(url + "/api/state")
            return process, url
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"meterbench {args[0]} did not serve: {process.communicate()[1][-2000:]}")
            time.sleep(0.05)


def read_events(url: str, events: list[dict], until, timeout_s: float) -> None:
    """Append the /events stream's JSON events, read with a plain HTTP client, until ``until(events)``.

    The first entry appended is ``{"type": "content-type", "value": ...}`` (the response's header)."""
    deadline = time.monotonic() + timeout_s
    with urllib.request.urlopen(url + "/events", timeout=5) as response:
        events.append({"type": "content-type", "value": response.headers["content-type"]})
        while not until(events) and time.monotonic() < deadline:
            line = response.readline().decode("utf-8")
            if not line:
                break
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))


def done(events: list[dict]) -> bool:
    """The stream has reached the run's (or replay's) final state."""
    return any(e["type"] == "state" and e.get("phase") == "done" for e in events)


def require_chromium() -> None:
    """Skip (fail under CI) without Playwright or Debian's Chromium."""
    require_module("playwright", "web")
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI installs Debian's chromium", pytrace=False)
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
