"""Where Ego-Exo4D takes (ViPE results of the exo cameras + annotations) live, for the ego-view assets."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from vipe_dagster.egoexo.takes import Discovery, RawDiscovery, discover_raw_takes, discover_takes

DEFAULT_TAKES_ROOT = "data/egoexo"


class EgoExoResource(dg.ConfigurableResource):
    """A takes root laid out as ``vipe_results/<take>/<cam>/``, ``annotations/ego_pose/<split>/camera_pose/``
    and ``takes/<take>/trajectory/`` (see ``vipe_dagster.egoexo.takes``); local folder or s3://."""

    takes_root: str = Field(default=DEFAULT_TAKES_ROOT,
                            description="root of the Ego-Exo4D takes and their ViPE results (env VIPE_EGOEXO_ROOT)")
    max_per_tick: int = Field(default=50, description="the takes sensor requests at most this many runs per tick")

    def discover(self, take_keys: set[str] | None = None) -> Discovery:
        return discover_takes(self.takes_root, take_keys)

    def discover_raw(self, take_keys: set[str] | None = None) -> RawDiscovery:
        """Takes of the raw Ego-Exo4D layout under the root (videos, calibration, camera_pose JSONs)."""
        return discover_raw_takes(self.takes_root, take_keys)


def resources() -> dict[str, EgoExoResource]:
    """Default resource; ``VIPE_EGOEXO_ROOT`` is read when the definitions are built."""
    return {"egoexo": EgoExoResource(takes_root=os.environ.get("VIPE_EGOEXO_ROOT") or DEFAULT_TAKES_ROOT)}
