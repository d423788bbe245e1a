"""Shared pieces of the video asset graph: partitions, pools, placement tags, backfill policy."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg

from vipe_dagster.io import ArtifactStore, fs
from vipe_dagster.logsetup import FORWARDED
from vipe_dagster.provenance import code_version

log = logging.getLogger(__name__)

# Dagster APIs this project uses knowingly although Dagster marks them beta / preview: their warnings would
# repeat on every start of every command and code server. Only these messages are silenced, nothing else.
KNOWN_PREVIEW_APIS = (
    (dg.BetaWarning, r"Parameter `backfill_policy` of function `asset`"),
    (dg.BetaWarning, r"Function `observable_source_asset`"),
    (dg.PreviewWarning, r"Specifying a partitions_def on an AssetCheckSpec"),
)
for _category, _message in KNOWN_PREVIEW_APIS:
    warnings.filterwarnings("ignore", message=_message, category=_category)

VIDEOS = dg.DynamicPartitionsDefinition(name="videos")
"""One partition per registered source video; keys match ``[a-z0-9_-]+`` (see vipe_dagster.registry)."""

VIDEO_GROUP = "video"
GPU_POOL = "gpu"
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
DATA_VERSION_TAG = "dagster/data_version"

# code versions follow the source each stage runs (vipe_dagster.provenance): a change marks partitions stale
INGEST_CODE_VERSION = code_version("ingest")
POSE_CODE_VERSION = code_version("pose")
DEPTH_CODE_VERSION = code_version("depth")
MASKS_CODE_VERSION = code_version("masks")
EXPORT_CODE_VERSION = code_version("colmap")

VIDEO_PIPELINE_JOB = dg.define_asset_job(
    "video_pipeline",
    selection=dg.AssetSelection.groups(VIDEO_GROUP),
    partitions_def=VIDEOS,
    description="Every per-video asset (and its checks) for one partition of `videos`.",
)


def placement_tags(kind: str = "gpu") -> dict[str, Any]:
    """Kubernetes placement op tags for engine steps, supplied by the deployment through the environment.

    ``kind="gpu"``: the same ``dagster-k8s/config`` body the k8s executor gives every ``gpu``-pool step
    (``vipe_dagster.deploy_config.gpu_step_k8s_config``: ``nvidia.com/gpu`` request = limit, node selector,
    and the default ``nvidia.com/gpu`` toleration unless ``VIPE_K8S_GPU_TOLERATIONS`` replaces it) when any
    ``VIPE_K8S_GPU_*`` variable is set, else no tags. An op tag hides the executor's placement, so it must be
    the complete body: with its own partial body (limit + node selector only) every real GPU step once got
    ``tolerations=[]`` under the documented variables. ``kind="cpu"`` reads ``VIPE_K8S_CPU_CONFIG`` /
    ``VIPE_K8S_CPU_NODE_SELECTOR`` / ``VIPE_K8S_CPU_TOLERATIONS``.
    """
    from vipe_dagster.deploy_config import gpu_step_k8s_config

    prefix = f"VIPE_K8S_{kind.upper()}_"
    if kind == "gpu":
        if not any((os.environ.get(prefix + v) or "").strip()
                   for v in ("CONFIG", "LIMIT", "NODE_SELECTOR", "TOLERATIONS")):
            return {}
        return {"dagster-k8s/config": gpu_step_k8s_config()}
    raw = os.environ.get(prefix + "CONFIG")
    if raw:
        try:
            return {"dagster-k8s/config": json.loads(raw)}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{prefix}CONFIG is not valid JSON: {exc}") from exc
    pod: dict[str, Any] = {}
    selector = os.environ.get(prefix + "NODE_SELECTOR")
    if selector:
        pairs = [p.split("=", 1) for p in selector.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"{prefix}NODE_SELECTOR must look like 'key=value,key2=value2', got {selector!r}")
        pod["node_selector"] = {k.strip(): v.strip() for k, v in pairs}
    tol = os.environ.get(prefix + "TOLERATIONS")
    if tol:
        pod["tolerations"] = json.loads(tol)
    if not pod:
        return {}
    return {"dagster-k8s/config": {"pod_spec_config": pod}}


RETRY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
"""Retries for engine steps. Only transient failures reach it (remote storage unreachable, timeouts, S3
throttling, a busy sequence lock): :func:`engine_step` turns every other error into a ``Failure`` that is
never retried, because an input error fails the same way every time."""


@contextlib.contextmanager
def engine_step(context, store: ArtifactStore, key: str, purpose: str) -> Iterator[None]:
    """One engine step of a partition: hold the sequence's lock (which also sweeps temporary files of killed
    runs), forward the engine's logs, and classify a failure as retryable or not (see ``RETRY``)."""
    from vipe_dagster.io.locks import sequence_lock

    with classify_failures(context), sequence_lock(store.root, key, f"dagster {purpose}"), \
            engine_logs_to_dagster(context):
        yield


@contextlib.contextmanager
def classify_failures(context) -> Iterator[None]:
    """Transient failures propagate (``RETRY`` retries them with backoff); any other error becomes a
    ``dg.Failure(allow_retries=False)`` carrying the engine's one-line message."""
    from vipe_dagster.errors import VipeError

    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        if fs.is_transient(exc):
            context.log.warning(f"transient failure, the step will be retried: {exc}")
            raise
        if isinstance(exc, VipeError):
            raise dg.Failure(description=str(exc), allow_retries=False,
                             metadata={"error": type(exc).__name__}) from exc
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def sidecar_path(store: ArtifactStore, key: str, suffix: str) -> str:
    """``vipe/<key>_<suffix>``: our extra per-sequence files (previews, metric tables)."""
    return fs.join(store.root, "vipe", f"{key}_{suffix}")


class _DagsterLogForwarder(logging.Handler):
    def __init__(self, dagster_log):
        super().__init__(level=logging.INFO)
        self._log = dagster_log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = f"{record.name}: {record.getMessage()}"
            (self._log.warning if record.levelno >= logging.WARNING else self._log.info)(msg)
            # the run's log has it now: the CLI's console handler (vipe_dagster.logsetup) does not print it again
            setattr(record, FORWARDED, True)
        except Exception:  # logging must never break the step
            self.handleError(record)


@contextlib.contextmanager
def engine_logs_to_dagster(context) -> Iterator[None]:
    """Forward the engine's ``vipe_dagster`` log records (INFO and up) to the step's Dagster log."""
    logger = logging.getLogger("vipe_dagster")
    handler = _DagsterLogForwarder(context.log)
    old_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
