"""Where a run's steps execute, chosen by $OCOG_EXECUTOR when the code location loads.

- unset or `multiprocess`: Dagster's default, each step in a process of its own on this
  machine (`make demo`, `make dev`);
- `celery`: dagster-celery's executor; each step is a task on the broker in
  $OCOG_CELERY_BROKER, run by whichever worker is free (`make workers` starts Redis, two
  workers and the UI with these set: ocog_lib/remote/celery_workers.py);
- `k8s`: dagster-k8s's executor, each step a Kubernetes Job in $OCOG_K8S_NAMESPACE from the
  image $OCOG_K8S_IMAGE (with dagster_home/dagster-k8s.yaml.template's run launcher).

Pools hold under all three: each executor claims a step's pool slot (the instance's
`concurrency.pools`) in the run's own process before the step is handed out, and frees it
when the step's result is back, so the one `benchmark` slot keeps two benchmarks apart
whichever workers or pods run them.
"""

from __future__ import annotations

import os

import dagster as dg

from ocog_lib.errors import InputError
from ocog_lib.remote.celery_workers import BACKEND_ENV, BROKER_ENV, EXECUTOR_ENV

MULTIPROCESS, CELERY, K8S = "multiprocess", "celery", "k8s"
K8S_NAMESPACE_ENV = "OCOG_K8S_NAMESPACE"
K8S_IMAGE_ENV = "OCOG_K8S_IMAGE"
# what a step pod must see of the run's environment (names only: values come from the pod)
K8S_FORWARDED_ENV = ["OCOG_DATA_DIR", "OCOG_DUCKDB", "OCOG_S3_BUCKET", "AWS_ENDPOINT_URL_S3",
                     "OCOG_OPTUNA_STORAGE", "OCOG_MODEL_STORE"]  # fmt: skip


def celery_executor_config() -> dict:
    """Broker and result backend from the environment, resolved when a run starts."""
    return {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}}


def k8s_executor_config() -> dict:
    """One Kubernetes Job per step; the CPU and memory a benchmark step needs."""
    return {
        "job_namespace": {"env": K8S_NAMESPACE_ENV},
        "job_image": {"env": K8S_IMAGE_ENV},
        "env_vars": K8S_FORWARDED_ENV,
        "step_k8s_config": {
            "container_config": {
                "resources": {"requests": {"cpu": "2", "memory": "8Gi"},
                              "limits": {"memory": "16Gi"}},
            },
        },  # fmt: skip
    }


def executor_kind() -> str:
    """$OCOG_EXECUTOR, checked: multiprocess (default), celery or k8s."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower() or MULTIPROCESS
    if kind not in (MULTIPROCESS, CELERY, K8S):
        raise InputError(f"{EXECUTOR_ENV}={kind!r}", f"use {MULTIPROCESS}, {CELERY} or {K8S}")
    if kind == CELERY and not os.environ.get(BROKER_ENV):
        raise InputError(f"{EXECUTOR_ENV}=celery", f"{BROKER_ENV} is not set: start the "
                         "broker and workers with `make workers`")  # fmt: skip
    return kind


def executor_from_env() -> dg.ExecutorDefinition | None:
    """The executor every ocog job runs on; None keeps Dagster's default (multiprocess)."""
    kind = executor_kind()
    if kind == CELERY:
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_executor_config(), name="ocog_celery")
    if kind == K8S:
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(), name="ocog_k8s")
    return None
