"""Run the whole Dagster asset graph for one video on a local SQLite instance, from nothing.

Registers the video as a ``videos`` partition, records its data version, materializes every per-video
asset with its checks in-process, and prints where the artifacts and previews are. The same run then
shows up in ``vipe-dagster ui`` (same DAGSTER_HOME). Imports dagster lazily (CLI hand-off).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._common import add_frame_range

NAME = "demo"
HELP = "materialize the Dagster asset graph for a sample video on a local instance and show the results"

_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "dog-example.mp4"


def add_arguments(p):
    p.add_argument("video", nargs="?", default=None,
                   help=f"video file or s3:// URI (default: {_SAMPLE.name} from samples/)")
    p.add_argument("--artifacts", default=None,
                   help="artifact root, a folder or s3://bucket/prefix (default: $VIPE_ARTIFACT_ROOT or data/artifacts)")
    p.add_argument("--dagster-home", "--dagster_home", dest="dagster_home", default=None,
                   help="Dagster instance folder (default: $DAGSTER_HOME or .dagster_home)")
    add_frame_range(p)
    p.add_argument("--long_side", "--long-side", dest="long_side", type=int, default=512,
                   help="processing long side in px (0 = keep the source size)")
    p.add_argument("--key", default=None, help="partition key (default: the sanitised file stem)")
    p.add_argument("--preset", default="pose_only", help="pose preset (pose_only, fixed_camera)")


def run(args) -> int:
    import logging

    from ..definitions import REPO_ROOT, apply_pool_limits, build_definitions, ensure_dagster_home

    logging.getLogger("alembic").setLevel(logging.WARNING)
    home = ensure_dagster_home(args.dagster_home)
    import dagster as dg

    from assets_defs._common import DATA_VERSION_TAG, VIDEOS
    from resources.artifacts import DEFAULT_ROOT, ArtifactStoreResource

    video = args.video or str(_SAMPLE)
    root = args.artifacts or os.environ.get("VIPE_ARTIFACT_ROOT") or str(REPO_ROOT / DEFAULT_ROOT)
    artifacts = ArtifactStoreResource(root=root)
    defs = build_definitions({"artifacts": artifacts})
    instance = dg.DagsterInstance.get()
    apply_pool_limits(instance, defs)

    entry, _ = artifacts.registry().register(video, key=args.key, start_frame=args.start_frame,
                                             end_frame=args.end_frame, frame_skip=args.frame_skip,
                                             long_side=args.long_side)
    key = entry.key
    if not instance.has_dynamic_partition(VIDEOS.name, key):
        instance.add_dynamic_partitions(VIDEOS.name, [key])
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key="raw_video", partition=key, tags={DATA_VERSION_TAG: entry.data_version},
        metadata={"uri": dg.MetadataValue.path(entry.uri)}))
    print(f"DAGSTER_HOME  {home}")
    print(f"artifacts     {root}")
    print(f"video         {entry.uri}  -> partition '{key}' ({entry.data_version[:23]}...)")

    job = defs.resolve_job_def("video_pipeline")
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    if _has_op(job, "slam_pose"):
        run_config["ops"] = {"slam_pose": {"config": {"preset": args.preset}}}
    result = job.execute_in_process(instance=instance, partition_key=key, run_config=run_config,
                                    raise_on_error=False)
    print(f"run           {result.run_id} ({'success' if result.success else 'FAILED'})")
    for ak in sorted(job.asset_layer.executable_asset_keys if hasattr(job.asset_layer, "executable_asset_keys")
                     else defs.resolve_all_asset_keys(), key=lambda k: k.to_user_string()):
        rec = instance.get_latest_materialization_event(ak)
        if rec is None or rec.run_id != result.run_id:
            continue
        md = rec.asset_materialization.metadata
        print(f"\n[{ak.to_user_string()}]")
        for name, val in md.items():
            if name == "preview":
                continue
            print(f"  {name:22s} {getattr(val, 'value', val)}")
    print("\nchecks:")
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            d = ev.event_specific_data
            status = "passed" if d.passed else f"FAILED ({d.severity.value})"
            name = f"{d.asset_key.to_user_string()}:{d.check_name}"
            print(f"  {name:46s} {status}: {d.description}")
    print(f"\nopen the UI on the same instance: DAGSTER_HOME={home} vipe-dagster ui --port 3000")
    return 0 if result.success else 1


def _has_op(job, name: str) -> bool:
    try:
        job.graph.node_named(name)
        return True
    except Exception:
        return False
