"""The Kubernetes deployment (deploy/), checked offline: no Docker engine, no cluster, no Helm binary.

What is validated by what:
- every YAML file under deploy/ parses (PyYAML);
- deploy/dagster-k8s.yaml: Dagster's own instance config schema (dagster_instance_config), then each
  configurable class's config (K8sRunLauncher, QueuedRunCoordinator, the Postgres storages, our pooled
  event log, the scheduler) against that class's config_type() with Dagster's process_config;
- deploy/k8s-job-executor.run-config.yaml: k8s_job_executor's config schema (process_config);
- deploy/helm/values.yaml: a transcription of the official chart's values models for the keys used
  (tests/fixtures/dagster_chart_values_subset.schema.json, jsonschema);
- Kubernetes objects (deploy/k8s/*.yaml) and the Kubernetes fragments inside the values and the
  instance config (resources, volumes, mounts) with kubernetes-validate, strict (unknown fields fail);
- deploy/Dockerfile: dependencies before the source, a non-root USER, EXPOSE 4000, the code-server CMD.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dagster._config import process_config
from dagster._config.field_utils import convert_potential_field
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer
from dagster_k8s import K8sRunLauncher, k8s_job_executor

from agent_defs.jobs.services import load_pricing

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
K8S_VERSION = "1.30"  # the oldest Kubernetes minor the manifests are meant for
USER_TAG = "agentflow/user_id"
SECRET_ENV = {"AGENTFLOW_DATABASE_URL", "AGENTFLOW_REDIS_URL", "AGENTFLOW_CREDENTIALS_KEYS", "DAGSTER_PG_URL"}


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _load_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _process(config_type: Any, value: Any) -> Any:
    result = process_config(convert_potential_field(config_type).config_type, value)
    assert result.success, [e.message for e in result.errors or []]
    return result.value


def _validate_k8s(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _pod(container: dict[str, Any], volumes: list[Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "example/image:1", **container}]}
    if volumes is not None:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


@pytest.fixture
def instance_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://user:pw@db.invalid:5432/dagster")
    shutil.copy(DEPLOY / "dagster-k8s.yaml", tmp_path / "dagster.yaml")
    return tmp_path


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return _load(DEPLOY / "helm" / "values.yaml")


# ------------------------------------------------------------------------------------------------
# YAML
# ------------------------------------------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses() -> None:
    files = _yaml_files()
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert {
        "dagster-k8s.yaml",
        "k8s-job-executor.run-config.yaml",
        "helm/values.yaml",
        "k8s/secret.example.yaml",
        "k8s/configmap-block-costs.yaml",
    } <= names
    for path in files:
        docs = _load_all(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(doc, dict) for doc in docs), path


# ------------------------------------------------------------------------------------------------
# The Dagster instance for Kubernetes
# ------------------------------------------------------------------------------------------------


def test_instance_config_validates_with_dagsters_schema(instance_home: Path) -> None:
    config, custom_class = dagster_instance_config(str(instance_home))
    assert custom_class is None
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["telemetry"] == {"enabled": False}
    assert config["run_monitoring"]["enabled"] is True
    assert config["sensors"]["use_threads"] is True
    assert config["schedules"]["use_threads"] is True


def test_instance_schema_rejects_a_misspelt_key(instance_home: Path) -> None:
    """The check above has teeth: Dagster's instance schema refuses unknown top-level keys."""
    text = (instance_home / "dagster.yaml").read_text(encoding="utf-8")
    (instance_home / "dagster.yaml").write_text(text + "\nrun_monitorng:\n  enabled: true\n")
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(instance_home))


def test_each_configurable_class_validates_its_config(instance_home: Path) -> None:
    config, _ = dagster_instance_config(str(instance_home))
    expected = {
        "run_storage": "PostgresRunStorage",
        "event_log_storage": "PooledPostgresEventLogStorage",
        "schedule_storage": "PostgresScheduleStorage",
        "run_launcher": "K8sRunLauncher",
        "run_coordinator": "QueuedRunCoordinator",
        "scheduler": "DagsterDaemonScheduler",
    }
    for key, class_name in expected.items():
        entry = config[key]
        klass = class_from_code_pointer(entry["module"], entry["class"])
        assert klass.__name__ == class_name
        processed = _process(klass.config_type(), entry.get("config") or {})
        if key.endswith("storage"):
            # resolved from the environment, never written in the file
            assert processed["postgres_url"] == "postgresql://user:pw@db.invalid:5432/dagster"
            assert entry["config"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}


def test_k8s_run_launcher_config_against_its_schema(instance_home: Path) -> None:
    config, _ = dagster_instance_config(str(instance_home))
    launcher = _process(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher["instance_config_map"] == "agentflow-dagster-instance"
    assert launcher["env_secrets"] == ["agentflow-env"]
    assert "AGENTFLOW_GRAPH_STORE=postgres" in launcher["env_vars"]
    assert launcher["run_k8s_config"]["container_config"]["resources"]["limits"]
    # and a wrong type is refused by the same schema
    bad = {**config["run_launcher"]["config"], "env_secrets": "agentflow-env"}
    assert not process_config(convert_potential_field(K8sRunLauncher.config_type()).config_type, bad).success


def test_run_pod_fragments_of_the_instance_are_valid_kubernetes(instance_home: Path) -> None:
    config, _ = dagster_instance_config(str(instance_home))
    launcher = config["run_launcher"]["config"]
    container = launcher["run_k8s_config"]["container_config"]
    _validate_k8s(_pod({**container, "volumeMounts": launcher["volume_mounts"]}, launcher["volumes"]))


def test_queue_limits_match_the_local_instance_and_the_helm_values(
    instance_home: Path, values: dict[str, Any]
) -> None:
    config, _ = dagster_instance_config(str(instance_home))
    k8s = config["run_coordinator"]["config"]
    local = _load(ROOT / "dagster.yaml")["run_coordinator"]["config"]
    assert k8s == local
    assert k8s["max_concurrent_runs"] == 4
    assert k8s["dequeue_interval_seconds"] == 1
    assert k8s["tag_concurrency_limits"] == [
        {"key": USER_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 2}
    ]
    helm = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert helm["maxConcurrentRuns"] == k8s["max_concurrent_runs"]
    assert helm["dequeueIntervalSeconds"] == k8s["dequeue_interval_seconds"]
    assert helm["tagConcurrencyLimits"] == k8s["tag_concurrency_limits"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["startTimeoutSeconds"] == config["run_monitoring"]["start_timeout_seconds"]
    assert monitoring["maxResumeRunAttempts"] == config["run_monitoring"]["max_resume_run_attempts"]


def test_k8s_job_executor_example_against_the_executors_schema() -> None:
    run_config = _load(DEPLOY / "k8s-job-executor.run-config.yaml")
    assert set(run_config) == {"execution"}
    executor_config = run_config["execution"]["config"]
    processed = _process(k8s_job_executor.config_schema.config_type, executor_config)
    assert processed["env_secrets"] == ["agentflow-env"]
    assert processed["max_concurrent"] == 4
    container = executor_config["step_k8s_config"]["container_config"]
    _validate_k8s(
        _pod({**container, "volumeMounts": executor_config["volume_mounts"]}, executor_config["volumes"])
    )
    typo = {**executor_config, "max_concurent": 4}
    assert not process_config(k8s_job_executor.config_schema.config_type, typo).success


# ------------------------------------------------------------------------------------------------
# Helm values for the official chart
# ------------------------------------------------------------------------------------------------


def test_helm_values_use_only_keys_of_the_chart(values: dict[str, Any]) -> None:
    schema = json.loads((FIXTURES / "dagster_chart_values_subset.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(values)
    # the subset schema has teeth: a misspelt key or a wrong enum fails
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "dagsterDeamon": {}}, schema)
    bad_launcher = {"type": "K8sLauncher", "config": values["runLauncher"]["config"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "runLauncher": bad_launcher}, schema)


def test_helm_values_wire_what_the_platform_needs(values: dict[str, Any]) -> None:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", "agent_defs"]
    assert "dagsterApiGrpcArgs" not in deployment  # the code server, not `dagster api grpc`
    assert deployment["port"] == 4000
    assert deployment["env"]["AGENTFLOW_GRAPH_STORE"] == "postgres"
    assert deployment["envSecrets"] == [{"name": "agentflow-env"}]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}

    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["envSecrets"] == [{"name": "agentflow-env"}]

    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == "agentflow-dagster-postgresql"

    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["enabled"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runMonitoring"]["enabled"] is True
    assert daemon["sensors"]["useThreads"] and daemon["schedules"]["useThreads"]
    assert values["telemetry"] == {"enabled": False}
    # the metrics endpoint is deployed by deploy/k8s/metrics.yaml, not through the chart's values
    assert "metrics" not in json.dumps(values).lower()


def test_helm_resources_and_volumes_are_valid_kubernetes(values: dict[str, Any]) -> None:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    k8s_launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    containers = {
        "webserver": values["dagsterWebserver"]["resources"],
        "daemon": values["dagsterDaemon"]["resources"],
        "user code": deployment["resources"],
        "run pods": k8s_launcher["runK8sConfig"]["containerConfig"]["resources"],
    }
    for name, resources in containers.items():
        assert set(resources) == {"requests", "limits"}, name
        _validate_k8s(_pod({"resources": resources}))
    _validate_k8s(_pod({"volumeMounts": deployment["volumeMounts"]}, deployment["volumes"]))
    _validate_k8s(_pod({"volumeMounts": k8s_launcher["volumeMounts"]}, k8s_launcher["volumes"]))
    env = [{"name": k, "value": v} for k, v in deployment["env"].items()]
    env_from = [{"secretRef": ref} for ref in deployment["envSecrets"]]
    _validate_k8s(_pod({"env": env, "envFrom": env_from, "ports": [{"containerPort": deployment["port"]}]}))


# ------------------------------------------------------------------------------------------------
# Plain Kubernetes manifests
# ------------------------------------------------------------------------------------------------


def test_k8s_manifests_validate_against_kubernetes_schemas() -> None:
    manifests = sorted((DEPLOY / "k8s").glob("*.yaml"))
    assert manifests
    kinds = []
    for path in manifests:
        for doc in _load_all(path):
            _validate_k8s(doc)
            kinds.append((doc["kind"], doc["metadata"]["name"]))
    assert ("Secret", "agentflow-env") in kinds
    assert ("Secret", "agentflow-dagster-postgresql") in kinds
    assert ("ConfigMap", "agentflow-block-costs") in kinds
    assert ("Deployment", "agentflow-metrics") in kinds and ("Service", "agentflow-metrics") in kinds
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_k8s({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dat": {}})


def test_secret_template_holds_placeholders_only() -> None:
    secrets = {d["metadata"]["name"]: d for d in _load_all(DEPLOY / "k8s" / "secret.example.yaml")}
    env = secrets["agentflow-env"]["stringData"]
    assert set(env) == SECRET_ENV
    pg = secrets["agentflow-dagster-postgresql"]["stringData"]
    assert set(pg) == {"postgresql-password"}
    for value in [*env.values(), *pg.values()]:
        assert "REPLACE_ME" in value
    assert "data" not in secrets["agentflow-env"]  # no base64 values hiding a real secret


def test_block_cost_configmap_is_a_cost_table_the_platform_reads(tmp_path: Path) -> None:
    (configmap,) = _load_all(DEPLOY / "k8s" / "configmap-block-costs.yaml")
    table = tmp_path / "block_costs.json"
    table.write_text(configmap["data"]["block_costs.json"], encoding="utf-8")
    assert load_pricing(table) == {}


# ------------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return out


def test_dockerfile_installs_dependencies_before_the_source_and_runs_the_code_server() -> None:
    steps = _instructions(DEPLOY / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")

    copies = [(i, args) for i, (word, args) in enumerate(steps) if word == "COPY"]
    runs = [(i, args) for i, (word, args) in enumerate(steps) if word == "RUN"]
    # the first COPY brings pyproject.toml alone
    first_copy_index, first_copy = copies[0]
    assert shlex.split(first_copy) == ["pyproject.toml", "./"]
    # the dependency install comes next, before any other COPY
    dep_install = next(i for i, args in runs if "pip install -r" in args)
    assert "tomllib" in steps[dep_install][1] and "dependencies" in steps[dep_install][1]
    source_copies = [i for i, args in copies[1:]]
    assert source_copies and first_copy_index < dep_install < min(source_copies)
    assert any("agent_defs" in args for _, args in copies[1:])
    assert any("blocks" in args for _, args in copies[1:])
    # then the project itself, without re-resolving dependencies
    project_install = next(i for i, args in runs if "pip install --no-deps ." in args)
    assert project_install > max(source_copies)

    users = [args for word, args in steps if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    user_index = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    cmd_index = max(i for i, (word, _) in enumerate(steps) if word == "CMD")
    assert user_index < cmd_index

    assert ("EXPOSE", "4000") in steps
    assert json.loads(steps[cmd_index][1]) == [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "agent_defs",
    ]  # fmt: skip
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "AGENTFLOW_ROOT=/opt/agentflow" in env  # project_root() of an installed copy


def test_dockerfile_dependency_step_installs_exactly_the_projects_dependencies(tmp_path: Path) -> None:
    """Runs the Dockerfile's own requirements-extraction command against pyproject.toml."""
    steps = _instructions(DEPLOY / "Dockerfile")
    run = next(args for word, args in steps if word == "RUN" and "pip install -r" in args)
    argv = shlex.split(run.split("&&")[0])
    assert argv[:2] == ["python", "-c"]
    code = argv[2].replace("/tmp/requirements.txt", str(tmp_path / "requirements.txt"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    requirements = (tmp_path / "requirements.txt").read_text(encoding="utf-8").split()
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert requirements == tomllib.load(f)["project"]["dependencies"]
    assert "dagster-k8s==0.29.27" in requirements
    assert "dagster==1.13.27" in requirements


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".dagster_home", ".pytest_cache", ".hypothesis", "tests"} <= ignored
    # and nothing the Dockerfile copies is ignored
    for needed in ["pyproject.toml", "README.md", "agent_defs", "blocks", "agents", "dagster.yaml"]:
        assert needed not in ignored
