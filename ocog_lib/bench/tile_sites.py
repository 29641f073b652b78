"""Where the tiles benchmark reads a stack from: its local files, or the same files in S3
behind the WAN shaper.

Remote: every file the stack's scenes name is uploaded once to the session's one layout
(`remote.session.stack_key`; an identical object is skipped), the stack is the same stack
with s3:// URIs as its assets (stack.json allows absolute URIs), and every reader in the
block goes through one shaper (`remote.session.shaped_link`): ocog's storage layer and
GDAL's /vsis3/ (rio-tiler) read the same objects from the same endpoint, the shaper
counting what each pulls. The endpoint's own rate for small ranged GETs is measured
unshaped first: moto answers a few hundred GETs a second on a small machine, and a cold
tile needs one per file, so that, not the link, can bound a cold remote tile.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ocog_lib.cube.stack import SceneStack
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

LOCATIONS = ("local", "remote")
_PROBE_BYTES = 64 << 10  # a typical compressed 256-px block
_PROBE_FLIGHT = 16


@dataclass(frozen=True)
class Site:
    location: str  # local | remote
    stack: SceneStack  # local paths, or the same scenes as s3:// URIs
    counters: Callable[[], object] | None = None  # remote: ShaperCounters so far
    rtt_ms: float | None = None
    cap_mb_s: float | None = None
    endpoint_gets_s: float | None = None  # unshaped ranged GETs per second, 16 in flight
    gdal_env: dict = field(default_factory=dict)  # for rio-tiler's passes


def check_locations(locations: tuple[str, ...]) -> tuple[str, ...]:
    bad = [x for x in locations if x not in LOCATIONS]
    if bad or not locations:
        raise InputError(f"locations={','.join(locations)}", f"one or more of {LOCATIONS}")
    return tuple(dict.fromkeys(locations))


@contextmanager
def site(location: str, stack: SceneStack, settings: Settings, *, rtt_ms: float,
         cap_mb_s: float | None, bucket: str | None = None,
         say: Callable[[str], None] = lambda _m: None) -> Iterator[Site]:  # fmt: skip
    """The stack as read from `location`; remote: inside a session and a shaped link."""
    if location == "local":
        yield Site("local", stack)
        return
    from ocog_lib.bench.tile_readers import RIO_REMOTE_ENV
    from ocog_lib.env import scoped_env
    from ocog_lib.remote.session import remote_session, shaped_link

    with remote_session(settings, bucket=bucket) as session:
        remote = remote_stack(session, stack, say)
        with scoped_env(session.env()):
            rate = endpoint_gets_per_s(remote.uri(remote.scenes[0], remote.bands[0]))
        say(f"endpoint: {rate:.0f} ranged GETs/s unshaped ({_PROBE_FLIGHT} in flight)")
        with shaped_link(session, rtt_ms=rtt_ms, cap_mb_s=cap_mb_s) as shaper:
            yield Site("remote", remote, shaper.counters, rtt_ms, cap_mb_s, rate,
                       dict(RIO_REMOTE_ENV))  # fmt: skip


def remote_stack(session, stack: SceneStack, say: Callable[[str], None]) -> SceneStack:
    """`stack` with every local asset replaced by its object's s3:// URI (uploaded if the
    bucket lacks it); assets that are URIs already stay as they are."""
    scenes = []
    for scene in stack.scenes:
        assets = dict(scene.assets)
        local = {a: stack.uri(scene, a) for a, ref in scene.assets.items() if "://" not in ref}
        if local:
            say(f"upload {scene.id} ({len(local)} files)")
            uris = session.upload_stack_files(stack.name, Path(stack.root), list(local.values()))
            assets.update(zip(local, uris, strict=True))
        scenes.append(dataclasses.replace(scene, assets=assets))
    return dataclasses.replace(stack, scenes=tuple(scenes))


def endpoint_gets_per_s(uri: str, seconds: float = 1.0) -> float:
    """Ranged GETs of 64 KiB per second the endpoint serves, 16 in flight, no shaper."""
    from concurrent.futures import ThreadPoolExecutor

    from ocog_lib.storage import open_source

    src = open_source(uri)
    size = src.size()
    length = min(_PROBE_BYTES, size)
    deadline = time.perf_counter() + seconds

    def pull(i: int) -> int:
        n, k = 0, i
        while time.perf_counter() < deadline:
            src.read((k * length) % max(1, size - length), length)
            n, k = n + 1, k + _PROBE_FLIGHT
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(_PROBE_FLIGHT) as pool:
        total = sum(pool.map(pull, range(_PROBE_FLIGHT)))
    return total / (time.perf_counter() - t0)
