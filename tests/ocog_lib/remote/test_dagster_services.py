"""Dagster's servers as our children (ocog_lib/remote/dagster_services.py): a code location
that fails to load is an error quoting Dagster's reason, and stopping leaves no process
behind. The happy path (dagster dev running the demo, the webserver read in Chromium) is
tests/ocog_assets/test_assets.py's demo test."""

import os
import shutil

import psutil
import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote.dagster_services import DagsterService, ServiceSpec, dagster_program

pytestmark = pytest.mark.slow


def test_a_location_that_fails_to_load_is_reported_and_the_tree_stopped(tmp_path):
    if not shutil.which(dagster_program("dagster-webserver")):
        pytest.skip("dagster-webserver is not installed")
    module = "ocog_no_such_module"
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_module:\n      module_name: {module}\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    service = DagsterService(ServiceSpec(workspace, kind="webserver"), tmp_path / "ui.log",
                             env={**os.environ, "DAGSTER_HOME": str(home)})
    with pytest.raises(InputError) as err:
        service.start(module)
    assert err.value.what == module and module in err.value.cause
    assert service.pid is None and service.port is None
    alive = [p for p in service.started_pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive


def test_an_unknown_kind_is_refused_by_name(tmp_path):
    with pytest.raises(InputError, match="'celery'"):
        ServiceSpec(tmp_path / "workspace.yaml", kind="celery").argv(3000)
