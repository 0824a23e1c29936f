"""A local cluster: orchestrator and worker processes started as separate OS processes.

Used by `tasker demo`, the acceptance tests and the benchmarks, so all three run the very
commands an operator runs.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from types import TracebackType

import msgspec

from tasker.config import ENV_PREFIX, Config


def config_environment(config: Config) -> dict[str, str]:
    """`config` as TASKER_* variables, so a child process rebuilds the same config.

    Worker-only settings (namespaces, handlers, concurrency) are left to each command.
    """
    skip = {"namespaces", "handlers", "concurrency", "template_path", "compat"}
    environment = {}
    for name, value in msgspec.structs.asdict(config).items():
        if name in skip or value is None:
            continue
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        environment[ENV_PREFIX + name.upper()] = text
    return environment


# Ports below Linux's ephemeral range (32768-60999 by default). A port the kernel picks
# for bind(0) comes from that range, where any outgoing connection may take it between
# our probe and the server's own bind (seen in CI: "address already in use").
_UNASSIGNED_PORTS = range(20_000, 32_768)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` nothing listens on right now, outside the ephemeral range."""
    for _ in range(200):
        port = _UNASSIGNED_PORTS.start + secrets.randbelow(len(_UNASSIGNED_PORTS))
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue  # taken: try another
            return port
    raise RuntimeError(f"no free TCP port in 20000-32767 on {host}")


class LocalCluster:
    def __init__(
        self,
        config: Config,
        *,
        namespaces: str,
        handler_modules: str,
        orchestrators: int = 1,
        workers: int = 1,
        log_level: str = "WARNING",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.namespaces = namespaces
        self.handler_modules = handler_modules
        self.orchestrator_count = orchestrators
        self.worker_count = workers
        self.log_level = log_level
        self.extra_env = extra_env or {}
        self.orchestrators: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.exit_codes: dict[int, int] = {}

    def environment(self) -> dict[str, str]:
        """The parent's environment plus every setting of the cluster's config."""
        return {**os.environ, **config_environment(self.config), **self.extra_env}

    @property
    def api_url(self) -> str:
        """The first orchestrator's API (each further one listens on a port of its own)."""
        return self.config.client_api_url

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tasker", "--log-level", self.log_level, *args]

    def start_orchestrator(self) -> subprocess.Popen[bytes]:
        environment = self.environment()
        if self.orchestrators:  # the first has config.api_bind; the others a free port
            environment["TASKER_API_BIND"] = f"127.0.0.1:{free_port()}"
        process = subprocess.Popen(self._command("orchestrator"), env=environment)
        self.orchestrators.append(process)
        return process

    def start_worker(self) -> subprocess.Popen[bytes]:
        command = self._command(
            "worker", "--namespace", self.namespaces, "--handlers", self.handler_modules
        )
        process = subprocess.Popen(command, env=self.environment())
        self.workers.append(process)
        return process

    def start(self) -> LocalCluster:
        for _ in range(self.orchestrator_count):
            self.start_orchestrator()
        for _ in range(self.worker_count):
            self.start_worker()
        if self.orchestrators and self.config.api_enabled:
            self.wait_for_api()
        return self

    def wait_for_api(self, timeout: float = 60.0) -> None:
        """Return once the first orchestrator's API is ready (startup only)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.orchestrators[0].poll() is not None:
                code = self.orchestrators[0].returncode
                raise RuntimeError(f"the orchestrator exited ({code}) before its API was ready")
            try:
                if httpx.get(f"{self.api_url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the API at {self.api_url} was not ready within {timeout:.0f}s")

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [*self.orchestrators, *self.workers]

    def stop(self, timeout: float = 30.0) -> dict[int, int]:
        """SIGTERM every process, wait for a graceful exit; return pid -> exit code."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        codes = {}
        for process in self.processes:
            try:
                codes[process.pid] = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[process.pid] = process.wait()
        return codes

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.exit_codes = self.stop()
