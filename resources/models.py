"""Model hub resource: where learned-model weights are cached and whether the network may be used."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from vipe_dagster.errors import InputError

DEFAULT_CACHE = "~/.cache/vipe-dagster/models"
"""Weights cache when ``VIPE_MODEL_CACHE`` is not set (``~`` expanded when the definitions are built)."""


class ModelHubResource(dg.ConfigurableResource):
    """Hugging Face Hub access for optional learned plug-ins (the default pipeline needs no weights).

    ``offline=True`` never touches the network: a weight that is not in ``cache_dir`` is an error
    that names the repository and file.
    """

    cache_dir: str = Field(default=DEFAULT_CACHE, description="weights cache folder (HF hub layout); env "
                                                               "VIPE_MODEL_CACHE")
    offline: bool = Field(default=True, description="only use weights already in cache_dir")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        Path(self.cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
        if self.offline:
            os.environ["HF_HUB_OFFLINE"] = "1"

    def fetch(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        """Local path of ``filename`` from ``repo_id`` (downloaded unless offline)."""
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(repo_id, filename, revision=revision,
                                   cache_dir=str(Path(self.cache_dir).expanduser()),
                                   local_files_only=self.offline)
        except Exception as exc:  # huggingface_hub raises several unrelated types for "not available"
            mode = "offline, and it is not in the cache" if self.offline else "download failed"
            raise InputError(f"model weight {repo_id}/{filename} (revision {revision or 'main'}) is unavailable: "
                             f"{mode} ({self.cache_dir}): {type(exc).__name__}: {exc}") from exc


def _env_bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    return default if v is None else v.strip().lower() in ("1", "true", "yes", "on")


def resources() -> dict[str, ModelHubResource]:
    """Default resource; ``VIPE_MODEL_CACHE`` / ``VIPE_MODEL_OFFLINE`` are read when the definitions are built."""
    cache = os.environ.get("VIPE_MODEL_CACHE") or DEFAULT_CACHE
    return {"model_hub": ModelHubResource(cache_dir=str(Path(cache).expanduser()),
                                          offline=_env_bool("VIPE_MODEL_OFFLINE", True))}
