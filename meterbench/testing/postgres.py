"""A throw-away PostgreSQL server for the store's tests: Debian's binaries, a temp cluster, 127.0.0.1 only.

PostgreSQL refuses to run as root, so under root the cluster is created and run as an unprivileged
user (``nobody`` by default, via ``runuser``) in a fresh folder under /tmp that the user owns. Trust
authentication on loopback only, superuser ``meterbench``; every step is bounded in time.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from meterbench.errors import DeviceError
from meterbench.testing.services import free_tcp_port

__all__ = ["PostgresServer", "postgres_bin_dir"]


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb, pg_ctl and postgres (None: not installed)."""
    found = [
        Path(d)
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if all(os.path.exists(os.path.join(d, b)) for b in ("initdb", "pg_ctl", "postgres"))
    ]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0) if found else None


class PostgresServer:
    """initdb + pg_ctl start on a free loopback port; ``url`` is its postgresql+psycopg URL; ``stop()`` ends it."""

    def __init__(self, run_as: str = "nobody", timeout_s: float = 30.0) -> None:
        self.bin_dir = postgres_bin_dir()
        if self.bin_dir is None:
            raise DeviceError("PostgreSQL server is not installed: run `apt-get install -y postgresql`")
        self.run_as = run_as if os.geteuid() == 0 else None
        self.timeout_s = timeout_s
        self.port = free_tcp_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="meterbench-pg-"))
        self.data = self.workdir / "data"
        self.url = f"postgresql+psycopg://meterbench@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        if done.returncode != 0:
            raise DeviceError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")
        return done

    def start(self) -> PostgresServer:
        """Create the cluster (first time) and start the server; waits until it accepts connections."""
        if self.run_as:
            shutil.chown(self.workdir, user=self.run_as)
            os.chmod(self.workdir, 0o700)
        if not self.data.is_dir():
            self._run("initdb", "-D", str(self.data), "-U", "meterbench", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.workdir} "
            "-c fsync=off -c full_page_writes=off"  # no OS crash in a test; commits stay durable across a stop
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(self.timeout_s)),
            "start",
        )
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise DeviceError(f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections in {self.timeout_s} s")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: smart, fast or immediate); the cluster stays for ``start()``."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(self.timeout_s)), "stop")

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
