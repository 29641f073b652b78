"""Runs submitted the way the UI submits them: over GraphQL to a webserver that loaded the
workspace, into the instance's run queue, dequeued and launched by the daemon.

Why not `execute_in_process`: such runs carry no code-location origin, so the UI's job
pages (Runs tab, timeline) do not list them and re-executing them warns of another
version. A run created by the webserver carries the remote job origin and the
`.dagster/repository` tag the UI filters on, and the queue keeps dagster.yaml's limits
(4 concurrent runs, the `op` pools).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster_graphql import DagsterGraphQLClient

from ocog_lib.errors import OcogError

LOCATION = "ocog_assets.definitions"  # workspace.yaml's python_module entry
REPOSITORY = "__repository__"  # the name Dagster gives a module's Definitions
_DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_ERRORS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}


class RunFailed(OcogError):
    """A submitted run ended without success: names the run, its job and partition."""

    def __init__(self, what: str, cause: str):
        self.what, self.cause = what, cause
        super().__init__(f"{what}: {cause}")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: a job and the one partition key it materializes."""

    job_name: str
    key: str | dg.MultiPartitionKey
    run_config: dict

    @property
    def label(self) -> str:
        return f"{self.job_name} [{self.key}]"

    def tags(self) -> dict[str, str]:
        """The partition tags a UI launch sets (a multi-partition key adds one per dimension)."""
        if isinstance(self.key, dg.MultiPartitionKey):
            dims = {f"dagster/partition/{d}": k for d, k in self.key.keys_by_dimension.items()}
            return {"dagster/partition": str(self.key), **dims}
        return {"dagster/partition": str(self.key)}


@dataclass
class RunQueue:
    """Submits runs to a webserver at host:port and watches them on the same instance."""

    instance: dg.DagsterInstance
    host: str
    port: int
    alive: Callable[[], str | None] = lambda: None  # None, or why the servers are gone
    poll_s: float = 0.5

    def submit(self, run: PlannedRun) -> str:
        client = DagsterGraphQLClient(self.host, port_number=self.port)
        return client.submit_job_execution(
            run.job_name, repository_location_name=LOCATION, repository_name=REPOSITORY,
            run_config=run.run_config, tags=run.tags())  # fmt: skip

    def run_wave(self, wave: Sequence[PlannedRun], progress: Callable[[str], None]) -> list[str]:
        """Submit every run of the wave and wait for all (see `wait`)."""
        submitted = []
        for run in wave:
            run_id = self.submit(run)
            progress(f"{run.label} queued, run {run_id}")
            submitted.append((run, run_id))
        return self.wait(submitted, progress)

    def wait(self, submitted: Sequence[tuple[PlannedRun, str]],
             progress: Callable[[str], None]) -> list[str]:
        """Wait until every run has ended; then RunFailed names each one that failed.

        A failure does not abandon its siblings: they finish and keep their measurements,
        instead of being cut off when the caller stops the servers."""
        pending = {run_id: (run, time.monotonic()) for run, run_id in submitted}
        failed = []
        while pending:
            time.sleep(self.poll_s)
            if why := self.alive():
                run_id, (run, _) = next(iter(pending.items()))
                raise RunFailed(run.label, f"run {run_id} orphaned: {why}")
            for run_id, (run, t0) in list(pending.items()):
                status = self.instance.get_run_by_id(run_id).status
                if status not in _DONE:
                    continue
                del pending[run_id]
                if status == dg.DagsterRunStatus.SUCCESS:
                    progress(f"{run.label} done, run {run_id} ({time.monotonic() - t0:.1f} s)")
                else:
                    failed.append(f"run {run_id} ({run.label}) {status.value}: "
                                  f"{self.first_error(run_id)}")  # fmt: skip
                    progress(f"{run.label} ended {status.value}, run {run_id}")
        if failed:
            raise RunFailed(f"{len(failed)} of {len(submitted)} runs", "; ".join(failed))
        return [run_id for _, run_id in submitted]

    def first_error(self, run_id: str) -> str:
        """The first failure message of a run's event log (the UI shows the whole log)."""
        for entry in self.instance.all_logs(run_id, of_type=_ERRORS):
            event = entry.dagster_event
            error = getattr(event.event_specific_data, "error", None) if event else None
            while error is not None and error.cause is not None:  # the root cause
                error = error.cause
            text = (error.message if error is not None else entry.message or "").strip()
            return text[:500] or "no message"
        return "no failure event (see the run in the UI)"
