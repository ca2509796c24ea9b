"""Shared fixtures: a real Mosquitto broker and real serial pseudo-terminal pairs (socat).

Both binaries come from Debian (``apt-get install -y mosquitto socat``). When one
is missing the fixture fails with that instruction (it never skips silently).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists()
                                  else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run `apt-get install -y {name}` "
                    f"(needed by the network/serial tests)", pytrace=False)
    return path


def free_tcp_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, up: bool, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"broker on port {port} did not come {'up' if up else 'down'} "
                       f"within {timeout_s} s")


class MosquittoBroker:
    """A mosquitto process on 127.0.0.1:``port`` with a temp config; restartable.

    Persistence is on (saved at shutdown) so persistent client sessions and
    their QoS 1 queues survive ``restart()``, as on a bench PC's broker.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = _require_binary("mosquitto")
        self.host = "127.0.0.1"
        self.port = port or free_tcp_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "persistence true", f"persistence_location {workdir}/",
                 "autosave_interval 1", f"log_dest file {workdir}/mosquitto.log"]
        if os.geteuid() == 0:
            lines.append("user root")
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(self.port, up=True)
        except RuntimeError as exc:
            self.process.kill()
            err = self.process.communicate()[1].decode(errors="replace")
            raise RuntimeError(f"{exc}: {err.strip()}") from exc

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM: it saves its persistence file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=5)
        self.process = None
        _wait_port(self.port, up=False)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` s, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


class SocatPtyPair:
    """Two linked pseudo-terminals (``a`` and ``b`` symlinks) made by socat; unplug/replug.

    Bytes written to one end are read at the other, as on a null-modem cable.
    ``unplug()`` kills socat (both ends vanish); ``replug()`` makes a new pair
    under the same names.
    """

    def __init__(self, workdir: Path, name: str = "tty") -> None:
        self.binary = _require_binary("socat")
        self.a = str(workdir / f"{name}-a")
        self.b = str(workdir / f"{name}-b")
        self.process: subprocess.Popen | None = None

    def plug(self) -> None:
        """Start socat and wait until both links exist."""
        self.process = subprocess.Popen(
            [self.binary, "-d", "-d", f"pty,raw,echo=0,link={self.a}",
             f"pty,raw,echo=0,link={self.b}"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5.0
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"socat did not create {self.a} and {self.b} within 5 s")
            time.sleep(0.02)

    def unplug(self) -> None:
        """Kill socat: both ptys disappear, as when a USB adapter is pulled."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=5)
        self.process = None
        for link in (self.a, self.b):
            if os.path.lexists(link):
                os.unlink(link)

    def replug(self) -> None:
        """Make a new pair under the same link names."""
        self.unplug()
        self.plug()


@pytest.fixture
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A fresh broker on a free port of 127.0.0.1 for one test."""
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    if broker.process is not None:
        broker.process.kill()
        broker.process.wait()


@pytest.fixture
def pty_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocatPtyPair]:
    """A socat pseudo-terminal pair (``pty_pair.a`` <-> ``pty_pair.b``) for one test."""
    pair = SocatPtyPair(tmp_path_factory.mktemp("pty"))
    pair.plug()
    yield pair
    pair.unplug()
