"""VirtuGhan (PyPI `virtughan`) as a peer of the tiles and area benchmarks, in a venv of its own.

VirtuGhan pins its own numpy, rio-tiler and matplotlib, so it never goes into the project's
environment: the first `ocog bench tiles --peers virtughan` creates
`$OCOG_DATA_DIR/peers/virtughan-<version>/` (`python -m venv` + pip install from PyPI,
built in a temporary folder then renamed, so a failed install leaves nothing), later runs
reuse it. It needs no torch. Its `virtughan.tile` imports fastapi and aiocache (its `api`
extra) at module level, so those two are installed beside it.

VirtuGhan takes its scenes from a STAC search on the internet; `virtughan_driver.py` (run
with the peer's python) replaces that search with our stack's scenes as STAC-item-shaped
features (id `S2X_<zone>_<yyyymmdd>_<n>_L2A`, which its tile-id parser reads; datetime;
eo:cloud_cover; assets -> our COG paths; a world-sized geometry, since its footprint filter
wants a real item's geometry), and the rest is VirtuGhan's own code, offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ocog_lib.cube.expression import Expression
from ocog_lib.cube.stack import SceneStack
from ocog_lib.settings import Settings

VERSION = "1.1.1"
PACKAGES = (f"virtughan=={VERSION}", "aiocache", "fastapi")
INSTALL_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 1800
_DRIVER = Path(__file__).with_name("virtughan_driver.py")
_WORLD = {"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90],
                                              [-180, -90]]]}  # fmt: skip


class PeerUnavailable(Exception):
    """VirtuGhan cannot run here; the message says which step failed and why."""


def venv_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "peers" / f"virtughan-{VERSION}"


def ensure_venv(settings: Settings, say=lambda _m: None) -> Path:
    """The peer venv's python, created on first use."""
    folder = venv_dir(settings)
    python = folder / "bin" / "python"
    if (folder / "installed.json").exists() and python.exists():
        return python
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".virtughan-", dir=folder.parent))
    try:
        say(f"virtughan: creating its venv ({' '.join(PACKAGES)}), once")
        _run([sys.executable, "-m", "venv", str(tmp)], "python -m venv", 300)
        _run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", *PACKAGES],
             f"pip install {' '.join(PACKAGES)}", INSTALL_TIMEOUT_S)  # fmt: skip
        (tmp / "installed.json").write_text(json.dumps({"packages": list(PACKAGES)}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return python


def _run(cmd: list[str], what: str, timeout: float, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{what}: no answer in {timeout:g} s") from None
    except OSError as exc:
        raise PeerUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PeerUnavailable(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def formula_bands(stack: SceneStack, expr: Expression) -> list[str]:
    """The band names and aliases the expression's text uses, in order: VirtuGhan's
    formula variables (its sentinel-2-l2a collection knows red, nir, ...)."""
    names = re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", expr.text)
    known = set(stack.bands) | set(stack.aliases)
    return list(dict.fromkeys(n for n in names if n in known))


def features(stack: SceneStack, bands: list[str]) -> list[dict]:
    """Our scenes as the STAC items VirtuGhan would have found."""
    out = []
    for i, scene in enumerate(stack.scenes):
        day = scene.datetime.strftime("%Y%m%d")
        out.append({"id": f"S2X_00OCG_{day}_{i}_L2A", "geometry": _WORLD,
                    "properties": {"datetime": scene.datetime.isoformat().replace("+00:00", "Z"),
                                   "eo:cloud_cover": scene.cloud_cover or 0.0},
                    "assets": {b: {"href": stack.uri(scene, stack.band_name(b))}
                               for b in bands}})  # fmt: skip
    return out


def _job(stack: SceneStack, expr: Expression, reducer: str, **more) -> dict:
    bands = formula_bands(stack, expr)
    first, last = stack.scenes[0].datetime, stack.scenes[-1].datetime
    return {"features": features(stack, bands), "bands": bands, "formula": expr.text,
            "operation": reducer, "start": first.date().isoformat(),
            "end": last.date().isoformat(), **more}  # fmt: skip


def run_job(settings: Settings, job: dict, say=lambda _m: None) -> dict:
    python = ensure_venv(settings, say)
    out = _run([str(python), str(_DRIVER)], f"virtughan {job['kind']}", RUN_TIMEOUT_S,
               stdin=json.dumps(job))  # fmt: skip
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise PeerUnavailable(f"virtughan {job['kind']}: no JSON answer ({out[-200:]!r})"
                              ) from None


def tile_times(stack: SceneStack, expr: Expression, plan: dict, cfg, settings: Settings,
               say=lambda _m: None) -> dict:  # fmt: skip
    """{(zoom, state): [per repeat: ms of each tile]}: cold = its first pass, warm = its
    second, one driver call per repeat covering every zoom."""
    tiles = [[z, x, y] for z, xy in plan.items() for x, y in xy]
    job = _job(stack, expr, cfg.reducer, kind="tiles", tiles=tiles, passes=2)
    out: dict = {}
    for repeat in range(cfg.repeats):
        say(f"virtughan tiles, repeat {repeat + 1}/{cfg.repeats}")
        passes = run_job(settings, job, say)["ms"]
        for state, ms in zip(("cold", "warm"), passes, strict=True):
            for (z, _, _), t in zip(tiles, ms, strict=True):
                out.setdefault((z, state), [[] for _ in range(cfg.repeats)])[repeat].append(t)
    return out


def export_times(stack: SceneStack, expr: Expression, reducer: str, bbox_wgs84, repeats: int,
                 settings: Settings, say=lambda _m: None) -> dict:  # fmt: skip
    """VirtuGhan's export of `bbox_wgs84` (west, south, east, north) `repeats` times:
    {"ms": [...], "core_ms": [...], "scenes": n, "output": its GeoTIFF}."""
    folder = Path(tempfile.mkdtemp(prefix="virtughan-export-"))
    job = _job(stack, expr, reducer, kind="export", bbox=list(bbox_wgs84), repeats=repeats,
               out=str(folder), workers=os.cpu_count() or 1)  # fmt: skip
    say(f"virtughan export x{repeats}")
    try:
        return run_job(settings, job, say)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
