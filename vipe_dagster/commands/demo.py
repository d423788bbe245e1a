"""Run the whole Dagster asset graph for one video, and the Ego-Exo4D branch on a synthetic take, on a
local SQLite instance, from nothing.

Registers the video as a ``videos`` partition, records its data version, materializes every per-video
asset (raw_video -> processed_video -> slam -> depth_maps + dynamic_masks -> colmap_export) with its
checks in-process; then generates a synthetic Ego-Exo4D take with two exo cameras, registers its
renderable take x camera views, renders each (``ego_render``) and picks the take's ``best_ego_view``.
Prints where the artifacts and previews are. The same runs then show up in ``vipe-dagster ui`` (same
DAGSTER_HOME). Imports dagster lazily (CLI hand-off).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._common import add_frame_range

NAME = "demo"
HELP = "materialize the Dagster asset graph for a sample video on a local instance and show the results"

_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "dog-example.mp4"
DEFAULT_SAMPLE_END = 63


def add_arguments(p):
    p.add_argument("video", nargs="?", default=None,
                   help=f"video file or s3:// URI (default: {_SAMPLE.name} from samples/)")
    p.add_argument("--artifacts", default=None,
                   help="artifact root, a folder or s3://bucket/prefix (default: $VIPE_ARTIFACT_ROOT or data/artifacts)")
    p.add_argument("--dagster-home", "--dagster_home", dest="dagster_home", default=None,
                   help="Dagster instance folder (default: $DAGSTER_HOME or .dagster_home)")
    add_frame_range(p)
    p.add_argument("--long_side", "--long-side", dest="long_side", type=int, default=384,
                   help="processing long side in px (0 = keep the source size)")
    p.add_argument("--takes-root", "--takes_root", dest="takes_root", default=None,
                   help="where the synthetic Ego-Exo4D take is generated (default: <DAGSTER_HOME>/demo_takes)")
    p.add_argument("--no-egoexo", "--no_egoexo", dest="egoexo", action="store_false",
                   help="skip the Ego-Exo4D branch")
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
    if args.video is None and args.end_frame is None:
        args.end_frame = DEFAULT_SAMPLE_END  # the whole graph on 2 CPU cores stays around a minute
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
    ok = _report(instance, job, result, f"video '{key}'")
    if args.egoexo:
        ok = _egoexo(args, home, instance, artifacts) and ok
    print(f"\nopen the UI on the same instance: DAGSTER_HOME={home} vipe-dagster ui --port 3000")
    return 0 if ok else 1


def _egoexo(args, home: Path, instance, artifacts) -> bool:
    from assets_defs.egoexo import EGO_VIEWS, TAKES
    from resources.egoexo import EgoExoResource

    from ..definitions import build_definitions
    from ..io import fs
    from ..synth.egoexo_take import add_exo_camera, generate_take

    root = Path(args.takes_root or home / "demo_takes").absolute()
    if fs.exists(str(root / "vipe_results")):
        print(f"\nEgo-Exo4D     re-using the synthetic take under {root}")
    else:
        take = generate_take(str(root), num_frames=8, resolution=224)
        add_exo_camera(take, "cam02", 60.0)  # a second exo camera, turned away from the wearer
        print(f"\nEgo-Exo4D     generated synthetic take '{take.take}' with cam01, cam02 under {root}")
    egoexo = EgoExoResource(takes_root=str(root))
    found = egoexo.discover()
    for t, c, reason in found.skipped:
        print(f"  not renderable: {t}/{c}: {reason}")
    defs = build_definitions({"artifacts": artifacts, "egoexo": egoexo})
    for name, keys in ((TAKES.name, found.take_keys), (EGO_VIEWS.name, found.view_keys)):
        new = [k for k in keys if not instance.has_dynamic_partition(name, k)]
        if new:
            instance.add_dynamic_partitions(name, new)
    ok = True
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
                        "ops": {"ego_render": {"config": {"resolution": 224}}}}
    job = defs.resolve_job_def("ego_render_job")
    for key in found.view_keys:
        res = job.execute_in_process(instance=instance, partition_key=key, run_config=run_config,
                                     raise_on_error=False)
        ok = _report(instance, job, res, f"ego view '{key}'") and ok
    best = defs.resolve_job_def("best_ego_view_job")
    for take_key in found.take_keys:
        res = best.execute_in_process(instance=instance, partition_key=take_key, raise_on_error=False,
                                      run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        ok = _report(instance, best, res, f"take '{take_key}'") and ok
    return ok


def _report(instance, job, result, what: str) -> bool:
    import dagster as dg

    print(f"\nrun           {result.run_id} for {what} ({'success' if result.success else 'FAILED'})")
    for ev in result.all_events:
        if ev.event_type_value != "ASSET_MATERIALIZATION":
            continue
        m = ev.event_specific_data.materialization
        print(f"\n[{m.asset_key.to_user_string()}]")
        for name, val in m.metadata.items():
            if name == "preview" or isinstance(val, dg.MarkdownMetadataValue):
                continue
            print(f"  {name:22s} {getattr(val, 'value', val)}")
    for ev in result.all_events:
        if ev.is_step_failure:
            err = ev.event_specific_data.error
            while err is not None and err.cause is not None:  # the engine's own exception, not dagster's wrapper
                err = err.cause
            print(f"\nstep {ev.step_key} FAILED: {err.message.strip() if err else ''}")
    checks = [ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION"]
    if checks:
        print("\nchecks:")
    for d in checks:
        status = "passed" if d.passed else f"FAILED ({d.severity.value})"
        name = f"{d.asset_key.to_user_string()}:{d.check_name}"
        print(f"  {name:46s} {status}: {d.description}")
    return result.success


def _has_op(job, name: str) -> bool:
    try:
        job.graph.node_named(name)
        return True
    except Exception:
        return False
