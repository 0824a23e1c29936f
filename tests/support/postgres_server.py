"""A PostgreSQL server owned by one test: the test may stop, start and restart it.

Uses the machine's PostgreSQL binaries (Debian's /usr/lib/postgresql/<v>/bin), run as the
`postgres` OS user (PostgreSQL refuses to run as root), with its data in a temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tasker.cli.cluster import free_port


def _binaries() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.iterdir(), key=lambda p: p.name) if root.exists() else []
    return versions[-1] / "bin" if versions else None


class PostgresUnavailableError(RuntimeError):
    """This machine cannot run a test-owned PostgreSQL (no binaries or no postgres user)."""


class TestPostgres:
    """initdb + pg_ctl on a private data directory, listening on `host:port`."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        binaries = _binaries()
        if binaries is None or shutil.which("runuser") is None:
            raise PostgresUnavailableError("PostgreSQL server binaries or runuser not found")
        self.bin = binaries
        self.host = host
        self.port = port or free_port(host)
        self.directory = Path(tempfile.mkdtemp(prefix="tasker-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def initialize(self) -> TestPostgres:
        shutil.chown(self.directory, "postgres")
        os.chmod(self.directory, 0o700)
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.directory}'\nfsync = on\n"
            )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", "60", action, *extra,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
