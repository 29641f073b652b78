"""The executors $OCOG_EXECUTOR selects, and the Kubernetes configs, checked against Dagster's
own config schemas without a cluster: dagster_home/dagster-k8s.yaml.template's instance
(K8sRunLauncher, queued runs, Postgres storage, pools) and the k8s_job_executor config."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

from ocog_assets.defs.common import executors
from ocog_lib.errors import InputError

REPO = Path(__file__).resolve().parents[2]
K8S_TEMPLATE = REPO / "dagster_home/dagster-k8s.yaml.template"
K8S_ENV = {"OCOG_K8S_NAMESPACE": "ocog", "OCOG_K8S_IMAGE": "registry.example/ocog:1",
           "OCOG_DAGSTER_PG_URL": "postgresql+psycopg2://ocog@db:5432/dagster"}  # fmt: skip


@pytest.fixture
def k8s_env(monkeypatch):
    for k, v in K8S_ENV.items():
        monkeypatch.setenv(k, v)


def _processed(block: dict) -> dict:
    """A `module/class/config` block validated against its class's own schema, env resolved."""
    cls = getattr(importlib.import_module(block["module"]), block["class"])
    result = process_config(cls.config_type(), block.get("config") or {})
    assert result.success, result.errors
    return result.value


def test_the_k8s_instance_template_validates(k8s_env, tmp_path):
    shutil.copyfile(K8S_TEMPLATE, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))  # the instance schema
    assert custom_class is None
    launcher = _processed(config["run_launcher"])  # K8sRunLauncher's own schema, env resolved
    assert launcher["job_namespace"] == "ocog" and launcher["job_image"] == K8S_ENV[
        "OCOG_K8S_IMAGE"]  # fmt: skip
    assert launcher["instance_config_map"] == "ocog-dagster-instance"
    coordinator = _processed(config["run_coordinator"])  # QueuedRunCoordinator's defaults
    assert "max_concurrent_runs" not in coordinator  # the limit is in `concurrency.runs`
    storage = process_config(_postgres_storage_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    assert storage.value["postgres_url"] == K8S_ENV["OCOG_DAGSTER_PG_URL"]
    assert config["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}


def _postgres_storage_type():
    from dagster_postgres import DagsterPostgresStorage

    return DagsterPostgresStorage.config_type()


def test_the_k8s_executor_config_validates(k8s_env, monkeypatch):
    from dagster_k8s import k8s_job_executor

    result = process_config(k8s_job_executor.config_schema.config_type,
                            executors.k8s_executor_config())  # fmt: skip
    assert result.success, result.errors
    assert result.value["job_namespace"] == "ocog"
    assert "OCOG_DATA_DIR" in result.value["env_vars"]

    monkeypatch.setenv(executors.EXECUTOR_ENV, "k8s")
    executor = executors.executor_from_env()
    assert executor is not None and executor.name == "ocog_k8s"

    @dg.job(executor_def=executor)
    def one_step():
        dg.op(name="noop")(lambda: None)()

    assert dg.validate_run_config(one_step, {})  # the configured executor's config resolves


def test_celery_is_chosen_by_the_environment_and_needs_a_broker(monkeypatch):
    from dagster_celery import celery_executor

    monkeypatch.delenv(executors.EXECUTOR_ENV, raising=False)
    assert executors.executor_from_env() is None  # `make demo`: Dagster's multiprocess default
    monkeypatch.setenv(executors.EXECUTOR_ENV, "celery")
    monkeypatch.delenv(executors.BROKER_ENV, raising=False)
    with pytest.raises(InputError, match="OCOG_CELERY_BROKER is not set"):
        executors.executor_from_env()
    monkeypatch.setenv(executors.BROKER_ENV, "redis://127.0.0.1:6379/0")
    monkeypatch.setenv(executors.BACKEND_ENV, "redis://127.0.0.1:6379/1")
    assert executors.executor_from_env().name == "ocog_celery"
    result = process_config(celery_executor.config_schema.config_type,
                            executors.celery_executor_config())  # fmt: skip
    assert result.success, result.errors
    assert result.value["broker"] == "redis://127.0.0.1:6379/0"
    assert result.value["backend"] == "redis://127.0.0.1:6379/1"
    monkeypatch.setenv(executors.EXECUTOR_ENV, "spark")
    with pytest.raises(InputError, match="use multiprocess, celery or k8s"):
        executors.executor_from_env()
