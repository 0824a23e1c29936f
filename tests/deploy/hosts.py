"""Separate "hosts" on one machine: Linux network namespaces joined by veth pairs.

`TestNetwork` creates a hub namespace holding a bridge and, per host, a namespace whose only
interface (`eth0`, one end of a veth pair; the other end is on the bridge) has an address in
a private /24. The root namespace is not touched: nothing on a host can reach this machine's
own services, and the hosts reach each other only over the veth addresses.

`start_postgres` and `start_rabbitmq` run test-owned server instances on a host, bound to
its veth address, with their data in a temporary directory. Everything is undone by
`TestNetwork.close()`: every process left in the namespaces is ended, the namespaces (and
with them the veths and the bridge) are deleted, the data directory removed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class HostSetupError(RuntimeError):
    """The machine cannot host the test network (not root, no ip netns, a server missing)."""


def missing_prerequisites() -> str | None:
    """Why this machine cannot run the multi-host test, or None."""
    if os.geteuid() != 0:
        return "it must run as root (ip netns, veth pairs)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    for client in ("psql", "pg_isready", "runuser"):
        if shutil.which(client) is None:
            return f"`{client}` is not installed"
    if not (POSTGRES_BIN / "initdb").exists():
        return f"PostgreSQL binaries are not in {POSTGRES_BIN}"
    if not RABBITMQ_SERVER.exists():
        return f"{RABBITMQ_SERVER} is not installed"
    for user in ("postgres", "rabbitmq"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"there is no `{user}` OS user to run the server as"
    probe = f"tkprobe-{uuid.uuid4().hex[:6]}"
    created = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if created.returncode != 0:
        return f"`ip netns add` fails here: {created.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _run(*command: str, timeout: float = 30) -> None:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if finished.returncode != 0:
        raise HostSetupError(f"{' '.join(command)}: {finished.stderr.strip()}")


class TestNetwork:
    """A bridge in a hub namespace and one namespace per host."""

    __test__ = False  # not a pytest test class

    def __init__(self, hosts: Sequence[str]) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.prefix = f"10.{random.randint(200, 250)}.{random.randint(1, 254)}"
        self.hub = f"tk{self.tag}-hub"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.directory = Path(tempfile.mkdtemp(prefix=f"tasker-hosts-{self.tag}-"))
        self.directory.chmod(0o755)  # the server users must reach their data directories
        self.logs = self.directory / "logs"
        self.logs.mkdir()
        self.logs.chmod(0o777)
        try:
            self._create(hosts)
        except BaseException:
            self.close()
            raise

    def _create(self, hosts: Sequence[str]) -> None:
        _run("ip", "netns", "add", self.hub)
        self.namespaces["hub"] = self.hub
        _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.hub, "link", "set", "br0", "up")
        for index, host in enumerate(hosts, start=2):
            namespace = f"tk{self.tag}-{host}"
            _run("ip", "netns", "add", namespace)
            self.namespaces[host] = namespace
            hub_end = f"v{index}"
            # Both ends are created inside the namespaces: the root namespace never sees them.
            _run(
                "ip", "-n", self.hub, "link", "add", hub_end, "type", "veth",
                "peer", "name", "eth0", "netns", namespace,
            )  # fmt: skip
            _run("ip", "-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
            address = f"{self.prefix}.{index}"
            _run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            self.addresses[host] = address

    # Processes ---------------------------------------------------------------------------

    def command(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def start(
        self,
        host: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log_name: str,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` on `host`; output goes to logs/<log_name>.log."""
        log = (self.logs / f"{log_name}.log").open("ab")
        process = subprocess.Popen(
            self.command(host, *argv),
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def run(
        self, host: str, argv: Sequence[str], *, env: dict[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(host, *argv),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # Servers -----------------------------------------------------------------------------

    def start_postgres(self, host: str, *, port: int = 5432) -> str:
        """A fresh PostgreSQL cluster on `host`'s address, trusting only this subnet.

        Returns the admin URL (user postgres, database postgres)."""
        data = self.directory / "postgres"
        sockets = self.directory / "postgres-sockets"
        for path in (data, sockets):
            path.mkdir()
            shutil.chown(path, "postgres", "postgres")
        _run(
            "runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "initdb"),
            "-D", str(data), "-U", "postgres", "--no-sync",
            "--auth-local=trust", "--auth-host=reject",
            timeout=120,
        )  # fmt: skip
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.prefix}.0/24 trust\n")
        address = self.addresses[host]
        settings = {
            "listen_addresses": address,
            "port": str(port),
            "unix_socket_directories": str(sockets),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        options = [item for key, value in settings.items() for item in ("-c", f"{key}={value}")]
        self.start(
            host,
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(data),
                *options,
            ],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            log_name=f"postgres-{host}",
        )
        return f"postgresql://postgres@{address}:{port}/postgres"

    def start_rabbitmq(self, host: str, *, port: int = 5682, dist_port: int = 25682) -> str:
        """A fresh RabbitMQ node on `host`'s address (own node name, ports, data, cookie,
        config; none of the machine's RabbitMQ files). Returns its AMQP URL."""
        base = self.directory / "rabbitmq"
        for name in ("mnesia", "log", "home"):
            (base / name).mkdir(parents=True)
        config = base / "rabbitmq.conf"
        config.write_text(
            "default_user = tasker\ndefault_pass = tasker\nloopback_users = none\n"
            "log.console = true\nlog.console.level = warning\nlog.file = false\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")
        for path in [base, *base.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")
        address = self.addresses[host]
        settings = {
            "HOME": str(base / "home"),  # the Erlang cookie is created here
            "RABBITMQ_NODENAME": f"tasker_{self.tag}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": address,
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        }
        assignments = [f"{key}={value}" for key, value in settings.items()]
        self.start(
            host,
            ["runuser", "-u", "rabbitmq", "--", "env", *assignments, str(RABBITMQ_SERVER)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            log_name=f"rabbitmq-{host}",
        )
        return f"amqp://tasker:tasker@{address}:{port}/%2F"

    # Teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """End every process started here or left in the namespaces; delete everything."""
        for process in self.processes:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        _wait_until(lambda: all(p.poll() is not None for p in self.processes), 15)
        for namespace in self.namespaces.values():
            self._end_namespace_processes(namespace)
        for process in self.processes:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for namespace in reversed(list(self.namespaces.values())):
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)
        self.namespaces.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _end_namespace_processes(namespace: str) -> None:
        """Processes that escaped their group (epmd daemonizes): by pid, TERM then KILL."""

        def pids() -> list[int]:
            listed = subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True
            )
            return [int(pid) for pid in listed.stdout.split()]

        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if _wait_until(lambda: not pids(), 10):
                return


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()
