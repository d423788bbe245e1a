"""Artifact store resource: where every asset reads and writes its files (local folder or s3://)."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from vipe_dagster.io import ArtifactStore
from vipe_dagster.registry import VideoRegistry

DEFAULT_ROOT = "data/artifacts"


class ArtifactStoreResource(dg.ConfigurableResource):
    """ViPE-layout artifact store. ``root`` is a local folder or ``s3://bucket/prefix``.

    For ``s3://`` the endpoint and credentials come from the environment of the run worker
    (``VIPE_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``).
    """

    root: str = Field(default=DEFAULT_ROOT,
                      description="artifact root: a local folder (relative to the code location's working "
                                  "directory) or s3://bucket/prefix; default data/artifacts")

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)

    def registry(self) -> VideoRegistry:
        return VideoRegistry(self.store())


def resources() -> dict[str, ArtifactStoreResource]:
    """Default resource; the environment (``VIPE_ARTIFACT_ROOT``) is read when the definitions are built."""
    return {"artifacts": ArtifactStoreResource(root=os.environ.get("VIPE_ARTIFACT_ROOT") or DEFAULT_ROOT)}
