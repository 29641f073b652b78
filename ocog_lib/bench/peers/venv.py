"""A peer's own virtual environment, made on first use under `<data_dir>/peers/<name>/venv`.

Peers pin packages the project's venv must not take (their numpy, pyarrow, a torch of
their own), so each gets a venv: `python -m venv` from an interpreter in the peer's
Python range, then pip. It is built in a temporary folder beside it and renamed into place
only once everything installed and its check ran, so a failed build leaves nothing behind
and the next run tries again; `ocog-peer.json` in it records what it was built from (a
changed spec rebuilds it) and `pip freeze`. Nothing here runs under `make test` unless a
test asks for it (OCOG_PEER_TESTS=1, see tests/ocog_lib/bench/test_peers.py).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ocog_lib.bench.peers.catalog import PeerSpec

INSTALL_TIMEOUT_S = 1800
STAMP = "ocog-peer.json"
# pip's settings that add indexes or wheel folders: left out of an install that must take
# its wheels from one index alone (PyTorch's CPU wheels, never a CUDA build)
_PIP_SOURCES = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT")


class PeerUnavailable(Exception):
    """A peer cannot run here; the message says which step failed and why."""


def venv_dir(spec: PeerSpec, data_dir: Path) -> Path:
    return Path(data_dir) / "peers" / spec.slug / "venv"


def clean_env(extra: dict[str, str] | None = None, *, isolated: bool = False) -> dict:
    """This process's environment for a child python: no PYTHONPATH or VIRTUAL_ENV (they
    would mix the project's packages in), `isolated`: no pip config or extra sources."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if isolated:
        env = {k: v for k, v in env.items() if k not in _PIP_SOURCES}
        env["PIP_CONFIG_FILE"] = os.devnull
    return {**env, **(extra or {})}


def run(cmd: list[str], what: str, timeout: float, env: dict | None = None) -> str:
    """stdout of `cmd`; PeerUnavailable naming `what` and pip's last lines on failure."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else clean_env(), check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{what}: no answer in {timeout:g} s") from None
    except OSError as exc:
        raise PeerUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        tail = [ln for ln in lines if not ln.startswith("WARNING: Location")][-3:]
        raise PeerUnavailable(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _candidates(lo: tuple[int, int], hi: tuple[int, int]) -> list[str]:
    minors = [m for m in range(lo[1], 40) if (3, m) < hi] if lo[0] == 3 else []
    out = [getattr(sys, "_base_executable", sys.executable), sys.executable]
    for m in minors:
        out += [p for p in (shutil.which(f"python3.{m}"),) if p]
        out += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{m}*/bin/python3.{m}")))
        out += [f"/usr/local/bin/python3.{m}", f"/usr/bin/python3.{m}"]
    return list(dict.fromkeys(p for p in out if p and os.path.exists(p)))


def find_python(want: tuple[tuple[int, int], tuple[int, int]]) -> str:
    """An interpreter in [lo, hi) that can make a venv (has ensurepip)."""
    lo, hi = want
    probe = "import sys, ensurepip; print(sys.version_info[0], sys.version_info[1])"
    tried = _candidates(lo, hi)
    for python in tried:
        try:
            done = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                                  timeout=60, env=clean_env(), check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and lo <= tuple(map(int, done.stdout.split())) < hi:
            return python
    span = f"{lo[0]}.{lo[1]} (up to, not including, {hi[0]}.{hi[1]})"
    raise PeerUnavailable(f"needs Python >= {span}; none that can make a venv among "
                          f"{len(tried)} found ({', '.join(tried[:6])})")  # fmt: skip


def _reachable(url: str) -> None:
    cafile = os.environ.get("PIP_CERT")
    ctx = ssl.create_default_context(cafile=cafile if cafile and os.path.exists(cafile) else None)
    try:
        with urllib.request.urlopen(url, timeout=20, context=ctx) as resp:
            resp.read(1)
    except OSError as exc:
        raise PeerUnavailable(f"{url} unreachable ({exc})") from None


def _pip(python: Path, args: list[str], what: str, **env_kw) -> None:
    run([str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
         *args], what, INSTALL_TIMEOUT_S, clean_env(**env_kw))  # fmt: skip


def _cpu_torch(spec: PeerSpec, python: Path, folder: Path,
               say: Callable[[str], None]) -> list[str]:  # fmt: skip
    """PyTorch's CPU wheels from its index alone, or, where that index cannot be reached,
    PyPI's torch and torchvision (a CUDA build with its nvidia-* packages, ~6 GB, that runs
    on the CPU here); pip args pinning them for what follows."""
    index = spec.cpu_index or ""
    try:
        _reachable(f"{index.rstrip('/')}/torch/")
    except PeerUnavailable as exc:
        say(f"{spec.name}: {exc}; taking {' and '.join(spec.cpu_packages)} from PyPI "
            "instead (a CUDA build, ~6 GB, run on the CPU), once")
        _pip(python, list(spec.cpu_packages),
             f"pip install {' '.join(spec.cpu_packages)} from PyPI (CUDA build)")
    else:
        _pip(python, ["--index-url", index, *spec.cpu_packages],
             f"pip install {' '.join(spec.cpu_packages)} from {index}", isolated=True)
    frozen = run([str(python), "-m", "pip", "freeze"], "pip freeze", 120)
    names = {p.lower() for p in spec.cpu_packages}
    pins = [ln for ln in frozen.splitlines() if ln.split("==")[0].lower() in names]
    constraints = folder / "cpu-pins.txt"
    constraints.write_text("\n".join(pins) + "\n")
    return ["-c", str(constraints)]


def ensure_venv(spec: PeerSpec, data_dir: Path, say: Callable[[str], None] = lambda _m: None):
    """The python a peer runs with: the project's own, or its venv's (built when missing or
    built from another spec). Raises PeerUnavailable saying which step failed."""
    if spec.python is None:
        return Path(sys.executable)
    folder = venv_dir(spec, data_dir)
    python = folder / "bin" / "python"
    stamp = folder / STAMP
    if stamp.exists() and python.exists():
        if json.loads(stamp.read_text()).get("install") == spec.install():
            return python
    base = find_python(spec.python)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".venv-build-", dir=folder.parent))
    try:
        say(f"{spec.name}: building its venv ({' '.join(spec.packages)}), once")
        run([base, "-m", "venv", str(tmp)], f"{base} -m venv", 600)
        new = tmp / "bin" / "python"
        pins = _cpu_torch(spec, new, tmp, say) if spec.cpu_packages else []
        _pip(new, [*spec.packages, *pins], f"pip install {' '.join(spec.packages)}")
        if spec.check:
            run([str(new), "-c", spec.check], f"{spec.name} import check", 600)
        frozen = run([str(new), "-m", "pip", "freeze"], "pip freeze", 120).splitlines()
        (tmp / STAMP).write_text(json.dumps({"install": spec.install(), "python": base,
                                             "freeze": frozen}, indent=1))  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return python


def installed(spec: PeerSpec, data_dir: Path) -> dict:
    """The stamp of a peer's venv ({} for the project's venv or none built)."""
    stamp = venv_dir(spec, data_dir) / STAMP
    return json.loads(stamp.read_text()) if spec.python and stamp.exists() else {}
