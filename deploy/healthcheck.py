"""The image's HEALTHCHECK: is this container's Tasker process live (or ready)?

    python /opt/tasker/healthcheck.py [live|ready]      # default: ready

A worker container (TASKER_WORKER_HEALTH_BIND set) is probed on its own health endpoint;
otherwise the orchestrator's REST API (TASKER_API_BIND). Exit 0 healthy, 1 unhealthy, as
Docker expects. A container with neither endpoint (a worker without a health bind, an
orchestrator with the API disabled) reports healthy: the process being up is all there is.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from tasker.config import ConfigError, host_port, load_config


def probe_url(which: str) -> str | None:
    """The URL to probe for `which` (live | ready), or None if nothing is served."""
    config = load_config()
    if config.worker_health_bind:
        bind, setting = config.worker_health_bind, "worker_health_bind"
    elif config.api_enabled:
        bind, setting = config.api_bind, "api_bind"
    else:
        return None
    host, port = host_port(bind, setting=setting)
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}/health/{which}"


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "ready"
    if which not in ("live", "ready"):
        print(f"usage: healthcheck.py [live|ready], got {which!r}", file=sys.stderr)
        return 2
    try:
        url = probe_url(which)
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if url is None:
        print("healthy: no health endpoint configured")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            print(f"healthy: {url} -> {response.status}")
            return 0
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url} -> {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
