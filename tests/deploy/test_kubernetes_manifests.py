"""The Kubernetes manifests: each overlay renders, and every resource validates against the
Kubernetes OpenAPI schemas (strict: unknown fields fail) of the oldest and newest versions we
support; then the wiring the schemas cannot see (labels, ports, probes, grace periods)."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tasker.config import Config, host_port
from tests.deploy.deployfiles import (
    KUBERNETES,
    OVERLAYS,
    Manifest,
    containers,
    identity,
    kubectl,
    render_kustomization,
    render_overlay,
    render_with_kubectl,
)

KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
EXPECTED = {
    ("v1", "ConfigMap", "tasker-config"),
    ("v1", "Secret", "tasker-secrets"),
    ("v1", "Service", "tasker-orchestrator"),
    ("apps/v1", "Deployment", "tasker-orchestrator"),
    ("apps/v1", "Deployment", "tasker-worker"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "tasker-worker"),
    ("batch/v1", "Job", "tasker-migrate"),
}


def _by_kind(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    name: str = request.param
    return name, render_overlay(name)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_resource_validates_against_the_kubernetes_schema(
    overlay: tuple[str, list[Manifest]], version: str
) -> None:
    _, manifests = overlay
    assert {identity(m) for m in manifests} == EXPECTED
    for manifest in manifests:
        # Raises ValidationError (bad field/type) or SchemaNotFoundError (unknown kind).
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_schema_check_rejects_a_misspelled_field() -> None:
    deployment = _by_kind(render_overlay("pgmq"), "Deployment", "tasker-worker")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 35

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_fallback_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: only the Python renderer is available here")
    directory = KUBERNETES / "overlays" / name
    by_kubectl = {identity(m): m for m in render_with_kubectl(directory)}
    by_python = {identity(m): m for m in render_kustomization(directory)}

    assert by_python == by_kubectl


def test_the_overlays_differ_only_in_the_broker_key() -> None:
    rendered = {name: {identity(m): m for m in render_overlay(name)} for name in OVERLAYS}
    pgmq, rabbitmq = rendered["pgmq"], rendered["rabbitmq"]
    config_key = ("v1", "ConfigMap", "tasker-config")

    assert pgmq[config_key]["data"]["TASKER_BROKER"] == "pgmq"
    assert rabbitmq[config_key]["data"]["TASKER_BROKER"] == "rabbitmq"
    switched = copy.deepcopy(rabbitmq)
    switched[config_key]["data"]["TASKER_BROKER"] = "pgmq"
    assert switched == pgmq


def test_orchestrators_run_two_replicas_behind_a_service_with_health_probes(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    deployment = _by_kind(manifests, "Deployment", "tasker-orchestrator")
    service = _by_kind(manifests, "Service", "tasker-orchestrator")
    config = _by_kind(manifests, "ConfigMap", "tasker-config")["data"]
    (container,) = containers(deployment)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}

    assert deployment["spec"]["replicas"] == 2
    assert container["args"] == ["orchestrator"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert ports["http"] == host_port(config["TASKER_API_BIND"], setting="api_bind")[1]
    assert _probe(container, "livenessProbe") == ("/health/live", "http")
    assert _probe(container, "readinessProbe") == ("/health/ready", "http")


def test_workers_scale_with_an_hpa_and_drain_before_they_are_killed(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    deployment = _by_kind(manifests, "Deployment", "tasker-worker")
    hpa = _by_kind(manifests, "HorizontalPodAutoscaler", "tasker-worker")
    config = _by_kind(manifests, "ConfigMap", "tasker-config")["data"]
    (container,) = containers(deployment)
    pod = deployment["spec"]["template"]["spec"]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}

    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == identity(deployment)
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert container["args"][0] == "worker"
    assert ports["health"] == host_port(env["TASKER_WORKER_HEALTH_BIND"], setting="x")[1]
    assert _probe(container, "livenessProbe") == ("/health/live", "health")
    assert _probe(container, "readinessProbe") == ("/health/ready", "health")
    grace = float(config["TASKER_SHUTDOWN_GRACE_SECONDS"])
    assert grace < pod["terminationGracePeriodSeconds"] <= grace + 15


def test_the_migrate_job_runs_db_migrate_once(overlay: tuple[str, list[Manifest]]) -> None:
    _, manifests = overlay
    job = _by_kind(manifests, "Job", "tasker-migrate")
    (container,) = containers(job)

    assert container["args"] == ["db", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert job["spec"]["backoffLimit"] >= 1


def test_every_container_has_resources_runs_as_non_root_and_reads_the_settings(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "Job")]
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
        for container in containers(workload):
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            sources = container["envFrom"]
            refs = {
                ("ConfigMap", s["configMapRef"]["name"])
                if "configMapRef" in s
                else ("Secret", s["secretRef"]["name"])
                for s in sources
            }
            assert ("ConfigMap", "tasker-config") in refs
            assert refs <= names


def test_the_settings_are_valid_configuration(overlay: tuple[str, list[Manifest]]) -> None:
    from tasker.config import load_config

    _, manifests = overlay
    data: dict[str, Any] = {
        **_by_kind(manifests, "ConfigMap", "tasker-config")["data"],
        **_by_kind(manifests, "Secret", "tasker-secrets")["stringData"],
    }
    config = load_config(environ=data)

    assert isinstance(config, Config)
    assert config.broker == overlay[0]


def _probe(container: dict[str, Any], kind: str) -> tuple[str, str]:
    probe = container[kind]["httpGet"]
    return probe["path"], probe["port"]
