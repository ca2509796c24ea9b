"""Local services for tests and the simulated bench: a real Mosquitto broker on 127.0.0.1, a
socat serial pseudo-terminal pair (a null-modem cable) and a local Dask cluster. The mosquitto and socat
binaries come from Debian (``apt-get install -y mosquitto socat``); a missing one is a DeviceError saying so."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from meterbench.errors import DeviceError

__all__ = ["LocalDaskCluster", "MosquittoBroker", "SocatPtyPair", "free_tcp_port", "require_binary"]


def require_binary(name: str) -> str:
    """Path of a Debian-packaged binary, or DeviceError saying how to install it."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        raise DeviceError(f"{name} is not installed: run `apt-get install -y {name}`")
    return path


def free_tcp_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """A mosquitto process on 127.0.0.1:``port`` with its own config in ``workdir``.

    Persistence is on (saved at shutdown) so persistent client sessions and their
    QoS 1 queues survive ``restart()``, as on a bench PC's broker. ``users`` (name ->
    password) turns anonymous access off; ``tls`` (CA, certificate, key files) turns TLS on.
    ``extra_lines`` are further mosquitto.conf directives (e.g. a shipped bench configuration's
    ``acl_file``); a directive given there replaces the generated one of the same name.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
        extra_lines: list[str] | None = None,
    ) -> None:
        self.binary = require_binary("mosquitto")
        self.host = "127.0.0.1"
        self.port = port or free_tcp_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {str(not users).lower()}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.workdir}/mosquitto.log",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if users:
            lines.append(f"password_file {self._password_file(users)}")
        if tls:  # (CA certificate, server certificate, server key): TLS on this listener
            lines += [f"cafile {tls[0]}", f"certfile {tls[1]}", f"keyfile {tls[2]}"]
        extra = [line.strip() for line in extra_lines or [] if line.strip() and not line.lstrip().startswith("#")]
        given = {line.split()[0] for line in extra}
        lines = [line for line in lines if line.split()[0] not in given or line.startswith("listener")] + extra
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def _password_file(self, users: dict[str, str]) -> Path:
        """Write a mosquitto password file for ``users`` (name -> password)."""
        path = self.workdir / "passwords"
        path.write_text("")
        tool = require_binary("mosquitto_passwd")
        for name, password in users.items():
            subprocess.run([tool, "-b", str(path), name, password], check=True, capture_output=True)
        return path

    def start(self, timeout_s: float = 5.0) -> MosquittoBroker:
        """Start the broker and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                log = self.workdir / "mosquitto.log"
                tail = log.read_text()[-300:] if log.exists() else ""
                raise DeviceError(f"mosquitto did not start on 127.0.0.1:{self.port}: {tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM: it saves its persistence file)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=5)
        self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` s, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


class SocatPtyPair:
    """Two linked pseudo-terminals (symlinks ``a`` and ``b``) made by socat.

    Bytes written at one end are read at the other, like a null-modem cable.
    ``unplug()`` kills socat (both ends vanish, as when a USB adapter is pulled);
    ``replug()`` makes a new pair under the same names.
    """

    def __init__(self, workdir: Path, name: str = "tty") -> None:
        self.binary = require_binary("socat")
        self.a = str(Path(workdir) / f"{name}-a")
        self.b = str(Path(workdir) / f"{name}-b")
        self.process: subprocess.Popen | None = None

    def plug(self, timeout_s: float = 5.0) -> SocatPtyPair:
        """Start socat and wait until both links exist."""
        self.process = subprocess.Popen(
            [self.binary, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise DeviceError(f"socat did not create {self.a} and {self.b} in {timeout_s} s")
            time.sleep(0.02)
        return self

    def unplug(self) -> None:
        """Kill socat; remove the links."""
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


class LocalDaskCluster:
    """A Dask distributed scheduler and worker processes on 127.0.0.1 (for `batch --cluster`), each a
    process of its own with its log in ``workdir``; every worker has one thread and runs under a nanny
    that restarts it if it dies. ``preload`` modules are imported by each worker as it starts (Dask's
    ``--preload``; ``meterbench.batch`` readies the verification code). Needs the [cluster] extra (Dask
    distributed) in this Python."""

    def __init__(self, workdir: Path, workers: int = 2, *, preload: tuple[str, ...] = ()) -> None:
        import sys

        self.python = sys.executable
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.workers_wanted = workers
        self.preload = preload
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._logs: dict[int, Path] = {}  # worker pid -> its log

    def _spawn(self, args: list[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                [self.python, "-m", *args],
                stdout=out,
                stderr=out,
                env={**os.environ, **(env or {})},
                cwd=self.workdir,
                start_new_session=True,  # its nanny and worker are stopped as one group
            )

    def start(self, timeout_s: float = 60.0) -> LocalDaskCluster:
        """Start the scheduler and the workers; wait until every worker has registered."""
        self.scheduler = self._spawn(
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            self.workdir / "scheduler.log",
            None,
        )
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            self._check_alive(self.scheduler, self.workdir / "scheduler.log", deadline)
            time.sleep(0.05)
        for _ in range(self.workers_wanted):
            self.add_worker(timeout_s=max(1.0, deadline - time.monotonic()), wait=False)
        for worker in self.workers:
            self.wait_registered(worker, max(1.0, deadline - time.monotonic()))
        return self

    def add_worker(
        self, env: dict[str, str] | None = None, *, timeout_s: float = 60.0, wait: bool = True
    ) -> subprocess.Popen:
        """Start one more worker (``env`` added to its environment, e.g. another PYTHONPATH)."""
        index = len(self._logs)
        log = self.workdir / f"worker-{index}.log"
        worker = self._spawn(
            [
                "distributed.cli.dask_worker",
                self.address,
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--name",
                f"worker-{index}",
                *(arg for module in self.preload for arg in ("--preload", module)),
            ],
            log,
            env,
        )
        self.workers.append(worker)
        self._logs[worker.pid] = log
        if wait:
            self.wait_registered(worker, timeout_s)
        return worker

    def wait_registered(self, worker: subprocess.Popen, timeout_s: float) -> None:
        """Wait until ``worker`` has registered with the scheduler (its log says so)."""
        log = self._logs[worker.pid]
        deadline = time.monotonic() + timeout_s
        while "Registered to:" not in log.read_text(errors="replace"):
            self._check_alive(worker, log, deadline)
            time.sleep(0.05)

    @staticmethod
    def _check_alive(process: subprocess.Popen, log: Path, deadline: float) -> None:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
            raise DeviceError(f"a local Dask process did not start ({log.name}): {tail}")

    def stop_worker(self, worker: subprocess.Popen) -> None:
        """Stop one worker (its nanny and worker process)."""
        self._stop(worker)
        self.workers.remove(worker)

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # a worker process its nanny left behind
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the workers, then the scheduler."""
        for worker in list(self.workers):
            self.stop_worker(worker)
        if self.scheduler is not None:
            self._stop(self.scheduler)
            self.scheduler = None
