"""ObjectStore: dagster-aws's S3Resource, pointed at ocog's endpoint once it is known.

A configured endpoint (OCOG_S3_ENDPOINT / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) goes
into the S3Resource as an EnvVar, visible in the UI. Without one, ocog's embedded S3
server is the endpoint, and its URL exists only once it runs: the wrapper resolves it at
run time (starting the server if needed) and hands out the S3Resource pointed there.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from ocog_assets.resources import OcogPaths
from ocog_lib.remote.endpoint import (
    BUCKET_VAR,
    ENDPOINT_VARS,
    Endpoint,
    bucket_from_env,
    resolve_endpoint,
)

VARIANTS_PREFIX = "variants"


class ObjectStore(dg.ConfigurableResource):
    """Where ocog keeps objects: `s3://<bucket>/<prefix>/<dataset>/<variant>/<file>`.

    `s3.endpoint_url` unset means ocog's embedded endpoint (objects in its memory: after
    it stops, uploads must run again). `bucket` unset means $OCOG_S3_BUCKET or "ocog".
    """

    paths: OcogPaths
    s3: S3Resource
    bucket: str | None = None
    prefix: str = VARIANTS_PREFIX

    def endpoint(self) -> Endpoint:
        """The resolved endpoint; starts the embedded server if it is the one and is down."""
        endpoint = resolve_endpoint(
            self.paths.settings(), url=self.s3.endpoint_url or None, bucket=self.bucket or None
        )
        if not endpoint.embedded and self.s3.region_name:
            endpoint = replace(endpoint, region=self.s3.region_name)
        return endpoint

    def uri_for(self, dataset: str, variant: str, relpath: str = "") -> str:
        """The object (or, with no relpath, the folder ending in "/") of a variant's file."""
        bucket = self.bucket or bucket_from_env()
        return f"s3://{bucket}/{self.prefix.strip('/')}/{dataset}/{variant}/{relpath.lstrip('/')}"

    def s3_resource(self, endpoint: Endpoint | None = None) -> S3Resource:
        """The S3Resource with the endpoint filled in (and the embedded server's dummy
        credentials where no AWS credentials are configured anywhere)."""
        endpoint = endpoint or self.endpoint()
        update: dict[str, Any] = {"endpoint_url": endpoint.url}
        if endpoint.region and not self.s3.region_name:
            update["region_name"] = endpoint.region
        opts = endpoint.client_opts()
        if "aws_access_key_id" in opts and not (self.s3.aws_access_key_id or self.s3.profile_name):
            update["aws_access_key_id"] = opts["aws_access_key_id"]
            update["aws_secret_access_key"] = opts["aws_secret_access_key"]
        return self.s3.model_copy(update=update)

    def client(self, endpoint: Endpoint | None = None) -> Any:
        """A boto3 S3 client made by dagster-aws's S3Resource."""
        return self.s3_resource(endpoint).get_client()

    def client_opts(self, endpoint: Endpoint | None = None) -> dict[str, Any]:
        """The same settings as boto3.client keywords, for ocog_lib (e.g. `upload_dir`).
        A profile's credentials are resolved here, held in memory only."""
        s3 = self.s3_resource(endpoint)
        opts: dict[str, Any] = {"endpoint_url": s3.endpoint_url}
        if s3.region_name:
            opts["region_name"] = s3.region_name
        if s3.verify is not None:
            opts["verify"] = s3.verify
        if not s3.use_ssl:
            opts["use_ssl"] = False
        keys = (s3.aws_access_key_id, s3.aws_secret_access_key, s3.aws_session_token)
        if s3.profile_name and not s3.aws_access_key_id:
            import boto3

            frozen = boto3.session.Session(profile_name=s3.profile_name).get_credentials()
            frozen = frozen.get_frozen_credentials() if frozen is not None else None
            keys = (frozen.access_key, frozen.secret_key, frozen.token) if frozen else keys
        names = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        opts.update({name: value for name, value in zip(names, keys, strict=True) if value})
        return opts


def _first_set(names: tuple[str, ...]) -> dg.EnvVar | None:
    for name in names:
        if os.environ.get(name):
            return dg.EnvVar(name)
    return None


def object_store_from_env(paths: OcogPaths) -> ObjectStore:
    """The resource as the code location builds it: EnvVars for what the environment sets."""
    s3 = S3Resource(
        endpoint_url=_first_set(ENDPOINT_VARS),
        region_name=_first_set(("AWS_REGION", "AWS_DEFAULT_REGION")),
    )
    return ObjectStore(paths=paths, s3=s3, bucket=_first_set((BUCKET_VAR,)))
