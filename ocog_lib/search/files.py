"""Which files a trial streams: a variant's local folder, or its objects in the one bucket.

Remote trials read the very objects `remote_variants` uploads
(`s3://<bucket>/variants/<dataset>/<variant>/<relpath>`, see `ocog_lib.remote.session`),
through the WAN shaper; whatever the bucket lacks is uploaded first, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ocog_lib.data.locate import bench_files, variant_content_hash
from ocog_lib.errors import InputError
from ocog_lib.search.space import STORAGES, TrialConfig
from ocog_lib.settings import Settings


@dataclass(frozen=True)
class RemoteOptions:
    """The W-remote workload: files behind the S3 endpoint, through the WAN shaper."""

    rtt_ms: float = 30.0
    cap_mb_s: float = 100.0


class VariantFiles:
    """Image and mask paths per variant; writes a custom profile's variant once."""

    def __init__(self, dataset: str, settings: Settings, *, write_missing: bool = True):
        self.dataset = dataset
        self.settings = settings
        self.write_missing = write_missing
        self._files: dict[str, tuple[list[str], list[str]]] = {}
        self._hashes: dict[str, str] = {}

    def files(self, cfg: TrialConfig) -> tuple[list[str], list[str]]:
        from ocog_lib.cog.write import ensure_variant  # GDAL: not at `ocog --help`

        name = cfg.variant_name()
        if name not in self._files:
            if cfg.variant is None:
                ensure_variant(self.dataset, cfg.profile_spec(), self.settings,
                               write=self.write_missing)  # fmt: skip
            self._files[name] = bench_files(self.dataset, name, self.settings)
            self._hashes[name] = variant_content_hash(self.dataset, name, self.settings)
        return self._files[name]

    def content_hash(self, cfg: TrialConfig) -> str | None:
        """The content hash of the variant `files(cfg)` returned (None before that)."""
        return self._hashes.get(cfg.variant_name())


class RemoteFiles(VariantFiles):
    """The same variants' images in the session's bucket (uploaded once, idempotently)."""

    def __init__(self, dataset: str, settings: Settings, session, **kw):
        super().__init__(dataset, settings, **kw)
        self.session = session  # an ocog_lib.remote.session.RemoteSession
        self._uris: dict[str, list[str]] = {}

    def files(self, cfg: TrialConfig) -> tuple[list[str], list[str]]:
        images, _masks = super().files(cfg)
        name = cfg.variant_name()
        if name not in self._uris:
            folder = self.settings.variant_dir(self.dataset, name)
            self._uris[name] = self.session.upload_variant_files(self.dataset, name, folder,
                                                                 images)  # fmt: skip
        return self._uris[name], []  # like `bench compare --remote`: images only


@contextmanager
def trial_files(
    dataset: str,
    storage: str,
    settings: Settings,
    remote: RemoteOptions | None = None,
    *,
    write_missing: bool = True,
) -> Iterator[VariantFiles]:
    """Local variant folders, or the remote session's bucket behind the WAN shaper."""
    if storage not in STORAGES:
        raise InputError(f"storage '{storage}'", f"choose one of {', '.join(STORAGES)}")
    if storage == "local":
        yield VariantFiles(dataset, settings, write_missing=write_missing)
        return
    from ocog_lib.remote.session import remote_session, shaped_link

    opts = remote or RemoteOptions()
    with remote_session(settings) as session:
        with shaped_link(session, rtt_ms=opts.rtt_ms, cap_mb_s=opts.cap_mb_s):
            yield RemoteFiles(dataset, settings, session, write_missing=write_missing)
