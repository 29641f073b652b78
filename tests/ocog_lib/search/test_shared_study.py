"""One optuna study shared by three processes through the local PostgreSQL server: every
trial recorded once (in optuna and in DuckDB's search_trials), best_configs = optuna's best;
the journal file stays the offline default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna

from ocog_lib import results
from ocog_lib.search.bayes import load_study, optuna_storage
from tests.support.postgres import postgres_server  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
PROCESSES, TRIALS = 3, 2


def _bayesian(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    args = ["search", "bayesian", "--study", "shared-pg", "--trials", str(TRIALS),
            "--seconds", "0.2", "--warmup", "0.05", "--no-baselines", "--max-workers", "0",
            "--json"]  # fmt: skip
    code = f"import sys; from ocog_lib.cli.main import main; sys.exit(main({args!r}))"
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_three_processes_share_one_study_on_postgres(postgres_server, fresh_search_data):  # noqa: F811
    data = fresh_search_data
    url = postgres_server.optuna_url(postgres_server.ensure_database(f"optuna_{os.getpid()}")
                                     .rsplit("/", 1)[1])  # fmt: skip
    env = {**os.environ, "OCOG_DATA_DIR": str(data.data_dir), "PYTHONPATH": str(REPO),
           "OCOG_OPTUNA_STORAGE": url}  # fmt: skip
    env.pop("OCOG_DUCKDB", None)
    optuna_storage(data, url)  # the schema once, so the three do not race to create it
    procs = [_bayesian(env, data.data_dir) for _ in range(PROCESSES)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        summary = json.loads(out.splitlines()[-1])
        assert summary["study"] == "shared-pg"
        assert "ocog@127.0.0.1" in url and "password" not in out + err

    study = load_study("shared-pg", data, url)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(PROCESSES * TRIALS))  # each trial once
    per_worker = {w: sum(t.worker == w for t in study.trials) for w in {t.worker for t in
                                                                        study.trials}}
    assert len(per_worker) == PROCESSES, per_worker  # all three ran trials
    assert not (data.data_dir / "optuna.journal").exists()  # Postgres, not the journal

    _, rows = results.query(data.results_db, "SELECT trial, state, value FROM search_trials "
                            "WHERE study = ? ORDER BY trial", ["shared-pg"])  # fmt: skip
    assert [r[0] for r in rows] == numbers and len(rows) == PROCESSES * TRIALS
    best = optuna.load_study(study_name="shared-pg", storage=url).best_trial
    _, view = results.query(data.results_db, "SELECT study, trial, samples_per_s FROM "
                            "best_configs WHERE dataset = 'sample' AND storage = 'local'")
    assert view == [("shared-pg", best.number, best.value)]
    print(f"\ntrials per process: {per_worker}; best trial {best.number}: {best.value:.0f}/s")
