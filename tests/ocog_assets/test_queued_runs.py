"""RunQueue.wait on a real (ephemeral) instance: the runs' ends are reported as the
daemon's launcher would, from another thread while the queue polls."""

import threading
import time

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent
from dagster._core.storage.dagster_run import DagsterRun

from ocog_assets.queued_runs import PlannedRun, RunFailed, RunQueue


def _started(instance, run_id: str) -> PlannedRun:
    instance.add_run(DagsterRun(job_name="j", run_id=run_id, status=dg.DagsterRunStatus.STARTED))
    return PlannedRun("j", run_id[:4], {})


def _succeed(instance, run_id: str) -> None:
    event = DagsterEvent(event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name="j")
    instance.report_dagster_event(event, run_id=run_id)


def _later(seconds: float, fn) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(seconds), fn()))
    t.start()
    return t


def test_a_failed_run_waits_for_its_siblings_then_names_itself():
    instance = dg.DagsterInstance.ephemeral()
    a, b, c = "aaaa0001", "bbbb0002", "cccc0003"
    runs = [(_started(instance, i), i) for i in (a, b, c)]
    said: list[str] = []
    threads = [
        _later(0.2, lambda: instance.report_run_failed(instance.get_run_by_id(a), "disk full")),
        _later(0.6, lambda: _succeed(instance, b)),
        _later(0.8, lambda: _succeed(instance, c)),
    ]
    with pytest.raises(RunFailed) as err:
        RunQueue(instance, "127.0.0.1", 1, poll_s=0.05).wait(runs, said.append)
    for t in threads:
        t.join()
    assert err.value.what == "1 of 3 runs"
    assert f"run {a} (j [aaaa]) FAILURE" in err.value.cause
    assert b not in err.value.cause and c not in err.value.cause
    # the siblings ended (and were reported) before the failure was raised
    assert [s.split(",")[0] for s in said] == ["j [aaaa] ended FAILURE", "j [bbbb] done",
                                               "j [cccc] done"]  # fmt: skip


def test_every_run_succeeding_returns_the_ids_in_submission_order():
    instance = dg.DagsterInstance.ephemeral()
    ids = ["dddd0004", "eeee0005"]
    runs = [(_started(instance, i), i) for i in ids]
    threads = [_later(0.3, lambda: _succeed(instance, ids[0])),
               _later(0.1, lambda: _succeed(instance, ids[1]))]  # fmt: skip
    assert RunQueue(instance, "127.0.0.1", 1, poll_s=0.05).wait(runs, lambda _: None) == ids
    for t in threads:
        t.join()


def test_servers_gone_names_a_pending_run_as_orphaned():
    instance = dg.DagsterInstance.ephemeral()
    runs = [(_started(instance, "ffff0006"), "ffff0006")]
    gone = "dagster dev exited (rc 1)"
    queue = RunQueue(instance, "127.0.0.1", 1, alive=lambda: gone, poll_s=0.01)
    with pytest.raises(RunFailed, match="run ffff0006 orphaned: dagster dev exited"):
        queue.wait(runs, lambda _: None)
