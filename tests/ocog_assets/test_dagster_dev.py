"""End to end: the real `dagster dev` serves the code location; a run launched over GraphQL
materializes a raw scene into a tmp data folder, and the sensor `sample_graph` (the UI's
sample preset) launches a backfill that the daemon runs."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import rasterio
import requests

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, port: int, proc: subprocess.Popen, log: Path):
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.proc, self.log = proc, log

    def __call__(self, query: str, **variables) -> dict:
        r = requests.post(self.url, json={"query": query, "variables": variables}, timeout=30)
        r.raise_for_status()
        body = r.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait(self, what: str, poll, timeout: float):
        """Poll until `poll()` returns something truthy; fail with the server log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dagster dev exited ({self.proc.returncode}):\n{self._tail()}")
            try:
                found = poll()
            except requests.RequestException:
                found = None
            if found:
                return found
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _stop(proc: subprocess.Popen, started: set[int]) -> None:
    """SIGINT to the group (a clean shutdown), then SIGKILL what lingers (the code server)."""
    try:
        started |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(pgid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    for pid in started:  # children that left the group, each by its own id
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs([p for p in map(_proc_or_none, started) if p], timeout=10)


def _proc_or_none(pid: int):
    try:
        p = psutil.Process(pid)
        return None if p.status() == psutil.STATUS_ZOMBIE else p
    except psutil.NoSuchProcess:
        return None


@pytest.fixture
def dagster_dev(dagster_home, tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), OCOG_DATA_DIR=str(tmp_path / "data"),
               OCOG_BENCH_SIZE="256")
    env.pop("OCOG_DUCKDB", None)
    port = _free_port()
    log = tmp_path / "dagster_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["env", "--default-signal=INT,TERM", str(DAGSTER), "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    started: set[int] = {proc.pid}
    try:
        yield GraphQL(port, proc, log), tmp_path / "data", started
    finally:
        _stop(proc, started)
    alive = [p for p in map(_proc_or_none, started) if p]
    assert not alive, f"stray processes after stopping dagster dev: {alive}"


LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name locationOrLoadError { __typename ... on PythonError { message }
      ... on RepositoryLocation { repositories { name } } } } } } }
"""
ADD_PARTITION = """
mutation($repo: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: "sensor_tile",
                      partitionKey: $key) {
    __typename ... on PythonError { message } } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }
"""
MATERIALIZATIONS = """
query($key: String!) { assetOrError(assetKey: {path: ["raw_scenes"]}) {
  __typename ... on Asset { assetMaterializations(partitions: [$key]) {
    partition runId metadataEntries { label
      ... on PathMetadataEntry { path } ... on IntMetadataEntry { intValue } } } } } }
"""


def test_dagster_dev_materializes_a_raw_scene_over_graphql(dagster_dev):
    from ocog_lib.data.sample import sample_tiles

    gql, data_dir, started = dagster_dev

    def location():
        entries = gql(LOCATIONS)["workspaceOrError"].get("locationEntries") or []
        loaded = next((e for e in entries if e["name"] == "ocog_assets.definitions"), None)
        loaded = loaded and loaded["locationOrLoadError"]
        if loaded and loaded["__typename"] == "PythonError":
            pytest.fail(f"ocog_assets.definitions failed to load: {loaded['message']}")
        return loaded if loaded and loaded["__typename"] == "RepositoryLocation" else None

    loc = gql.wait("the ocog_assets code location", location, timeout=90)
    selector = {"repositoryLocationName": "ocog_assets.definitions",
                "repositoryName": loc["repositories"][0]["name"]}
    for tile in sample_tiles():  # the sensor may have added them already
        added = gql(ADD_PARTITION, repo=selector, key=tile)["addDynamicPartition"]
        assert added["__typename"] in ("AddDynamicPartitionSuccess",
                                       "DuplicateDynamicPartitionError"), added

    tile = sample_tiles()[0]
    launched = gql(LAUNCH, params={
        "selector": {**selector, "jobName": "raw_scenes_job"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": tile}]},
    })["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        status = gql(RUN_STATUS, id=run_id)["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert gql.wait(f"run {run_id}", finished, timeout=120) == "SUCCESS", gql._tail()
    try:
        started |= {c.pid for c in psutil.Process(gql.proc.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass

    mats = gql(MATERIALIZATIONS, key=tile)["assetOrError"]["assetMaterializations"]
    assert [(m["partition"], m["runId"]) for m in mats] == [(tile, run_id)]
    meta = {e["label"]: e for e in mats[0]["metadataEntries"]}
    path = Path(meta["path"]["path"])
    assert path == data_dir / "raw" / "tiles" / f"{tile}.tif"
    with rasterio.open(path) as src:
        assert (src.count, src.dtypes[0]) == (4, "uint16")
        assert meta["width"]["intValue"] == src.width
        assert src.tags()["OCOG_TILE_ID"] == tile
    _sample_preset_backfills_what_is_missing(gql, selector, done_tile=tile)


START_SENSOR = """
mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
  __typename ... on PythonError { message } } }
"""
BACKFILLS = """
{ partitionBackfillsOrError(status: REQUESTED) { __typename
  ... on PartitionBackfills { results { id tags { key value }
    assetBackfillData { assetBackfillStatuses { __typename
      ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted
        numPartitionsMaterialized } } } } } } }
"""
CANCEL_BACKFILL = """
mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }
"""
RUNS_OF = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { runId status tags { key value } } } } }
"""


def _sample_preset_backfills_what_is_missing(gql, selector: dict, done_tile: str) -> None:
    """The UI's sample preset, switched on over GraphQL as the UI does: the daemon's sensor
    launches one backfill of the sample graph without the tile already materialized, and
    the backfill daemon runs its first partition (then it is cancelled)."""
    from ocog_lib.data.sample import sample_tiles

    started = gql(START_SENSOR, s={**selector, "sensorName": "sample_graph"})["startSensor"]
    assert started["__typename"] == "Sensor", started

    def preset_backfill():
        found = gql(BACKFILLS)["partitionBackfillsOrError"]["results"]
        return next((b for b in found if {"key": "ocog/preset", "value": "sample"} in b["tags"]),
                    None)

    backfill = gql.wait("the sample preset's backfill", preset_backfill, timeout=120)
    targeted = {s["assetKey"]["path"][0]: s["numPartitionsTargeted"]
                for s in backfill["assetBackfillData"]["assetBackfillStatuses"]}
    assert targeted["raw_scenes"] == len(sample_tiles()) - 1  # done_tile is materialized
    assert targeted["trained_models"] == 2 and targeted["cog_variants"] == 3

    def tile_runs_done():
        runs = gql(RUNS_OF, id=backfill["id"])["runsOrError"]["results"]
        by_tile = {_tag(r, "dagster/partition"): r["status"] for r in runs
                   if _tag(r, "dagster/partition") in sample_tiles()}
        ended = by_tile and all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in by_tile.values())
        return by_tile if ended else None

    by_tile = gql.wait("the backfill's raw_scenes run", tile_runs_done, timeout=120)
    gql(CANCEL_BACKFILL, id=backfill["id"])
    assert by_tile == {t: "SUCCESS" for t in sample_tiles() if t != done_tile}, (
        by_tile, gql._tail())


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)
