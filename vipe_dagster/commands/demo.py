"""Run the whole Dagster asset graph for one video, the Ego-Exo4D branch on a synthetic take, and the
catalog over what they produced, on a local SQLite instance, from nothing.

Registers the video as a ``videos`` partition and records its data version; then launches, one at a time,
runs of the workspace's code location through the instance's run launcher (``_launch``: the runs carry the
location's origin, so the UI lists them on Overview and each job's Runs tab and re-executes them from that
location, with the job's snapshot): ``video_pipeline`` for the video (raw_video -> processed_video -> slam -> depth_maps +
dynamic_masks -> colmap_export, with checks); ``exo_view_job`` (exo_video + camera-ID check ->
exo_inference -> ego_render) per camera of a generated Ego-Exo4D take in the raw layout (Kannala-Brandt exo
videos, rig depth without weights) and ``best_ego_view_job`` for the take, compared with the generator's ground
truth; the catalog build (``catalog_raw`` -> the dbt models
with their checks -> ``annotation_catalog``) over the artifact root. Prints what each run materialized and checked, and where to look. Imports dagster lazily
(CLI hand-off).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from ._common import add_frame_range

log = logging.getLogger(__name__)

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
    p.add_argument("--preset", default="pose_only",
                   help="slam_pose preset: pose_only, fixed_camera, wide_angle (an MEI video) or panorama (an "
                        "equirectangular video; its colmap_export step fails: COLMAP has no equirectangular camera)")


def run(args) -> int:
    from .. import definitions as d
    from ._launch import open_workspace

    logging.getLogger("alembic").setLevel(logging.WARNING)
    home = d.ensure_dagster_home(args.dagster_home)
    import dagster as dg

    from assets_defs._common import DATA_VERSION_TAG, VIDEOS
    from resources.artifacts import DEFAULT_ROOT, ArtifactStoreResource

    from ..io import fs

    video = args.video or str(_SAMPLE)
    if args.video is None and args.end_frame is None:
        args.end_frame = DEFAULT_SAMPLE_END  # the whole graph on 2 CPU cores stays around a minute
    root = _absolute(args.artifacts or os.environ.get("VIPE_ARTIFACT_ROOT") or str(d.REPO_ROOT / DEFAULT_ROOT))
    video = _absolute(video)
    artifacts = ArtifactStoreResource(root=root)
    defs = d.build_definitions({"artifacts": artifacts})
    instance = dg.DagsterInstance.get()
    d.apply_pool_limits(instance, defs)

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

    # the resources of the workspace's definitions, pointed at this demo's folders through the run config (so
    # a re-execution from the UI writes to the same places)
    resources: dict = {"artifacts": {"config": {"root": root}}}
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}, "resources": resources}
    if _has_op(defs.resolve_job_def("video_pipeline"), "slam_pose"):
        run_config["ops"] = {"slam_pose": {"config": {"preset": args.preset}}}
    catalog_db = str(home / "demo_catalog.duckdb") if fs.is_remote(root) else _absolute(str(Path(root) / "catalog.duckdb"))
    runs: list[str] = []
    with _cwd(d.WORKSPACE_YAML.parent), open_workspace(instance, str(d.WORKSPACE_YAML)) as ws:
        try:
            ok = _launch_and_finish(ws, runs, f"video '{key}'", "video_pipeline", run_config, key)
            if args.egoexo:
                ok = _egoexo(args, home, ws, runs, root) and ok
            catalog_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
                              "resources": {"catalog_db": {"config": {"datasets": [], "artifact_roots": [root],
                                                                      "db_path": catalog_db}}}}
            # the catalog build without the Hub metadata: raw tables -> dbt models (+ checks) -> publish
            from assets_defs.catalog import BUILD_KEYS

            ok = _launch_and_finish(ws, runs, f"the catalog over {root}", "catalog_refresh", catalog_config,
                                    asset_selection=[k.path for k in BUILD_KEYS]) and ok
        except KeyboardInterrupt:
            _terminate(instance, runs)
            raise
    _where_to_look(home, root, catalog_db, runs, key)
    return 0 if ok else 1


def _absolute(path: str) -> str:
    from ..io import fs

    return path if fs.is_remote(path) else str(Path(path).expanduser().absolute())


@contextmanager
def _cwd(path: Path):
    """The workspace's relative ``working_directory`` is the code location's: run from the workspace's folder."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


DEMO_TAKE = "synth_rig_1"
DEMO_CAMERAS = 3
DEMO_FRAMES = 8


def _egoexo(args, home: Path, ws, runs: list[str], artifact_root: str) -> bool:
    """The Ego-Exo4D branch from the videos: a generated take in the raw layout (exo cameras as Kannala-Brandt
    videos, the Aria video, gopro_calibs.csv, camera_pose JSON), registered as the takes sensor would, then per
    take x camera ``exo_view_job`` (exo_video + camera-ID check -> exo_inference -> ego_render) and per take
    ``best_ego_view_job``; finally the results against the generator's ground truth."""
    from assets_defs.egoexo import EGO_VIEWS, TAKES
    from resources.egoexo import EgoExoResource

    from ..io import fs
    from ..synth.egoexo_take import generate_rig_take

    instance = ws.instance
    root = Path(args.takes_root or home / "demo_takes").absolute()
    if fs.exists(str(root / "takes" / DEMO_TAKE)):
        print(f"\nEgo-Exo4D     re-using the generated take under {root}")
    else:
        take = generate_rig_take(str(root), num_cameras=DEMO_CAMERAS, num_frames=DEMO_FRAMES, exo_size=(192, 144),
                                 exo_focal=130.0, resolution=160, take=DEMO_TAKE)
        print(f"\nEgo-Exo4D     generated take '{take.take}' under {root} in the raw Ego-Exo4D layout: exo cameras "
              f"{', '.join(take.cams)} as separate {DEMO_FRAMES}-frame videos of a ray-cast room through a "
              f"Kannala-Brandt lens (k = {list(take.kb)}, in gopro_calibs.csv), the Aria Fisheye624 video, the "
              f"camera_pose JSON; ground truth under gt/ is for the comparison below only")
    egoexo = EgoExoResource(takes_root=str(root))
    raw = egoexo.discover_raw()
    for t, c, reason in raw.skipped:
        print(f"  skipped: {t}/{c}: {reason}")
    for name, keys in ((TAKES.name, raw.take_keys), (EGO_VIEWS.name, raw.view_keys)):
        new = [k for k in keys if not instance.has_dynamic_partition(name, k)]
        if new:
            instance.add_dynamic_partitions(name, new)
    resources = {"artifacts": {"config": {"root": artifact_root}}, "egoexo": {"config": {"takes_root": str(root)}}}
    quiet = {"console": {"config": {"log_level": "WARNING"}}}
    view_config = {"loggers": quiet, "resources": resources,
                   "ops": {"ego_render": {"config": {"resolution": 160, "subsample": 1, "normalize": True}}}}
    ok = True
    for k in raw.view_keys:  # one after the other: the rig sweeps of the first run are cached for the others
        ok = _launch_and_finish(ws, runs, f"exo view '{k}'", "exo_view_job", view_config, k) and ok
    for t in raw.take_keys:
        ok = _launch_and_finish(ws, runs, f"take '{t}'", "best_ego_view_job",
                                {"loggers": quiet, "resources": resources}, t) and ok
    if ok:
        _against_ground_truth(root, artifact_root)
    return ok


def _against_ground_truth(root: Path, artifact_root: str) -> None:
    """Print the exo depth and the chosen camera against the generator's ground truth (not read by any asset)."""
    import json

    import cv2
    import numpy as np

    from ..io import ArtifactStore, fs

    gt = root / "gt" / DEMO_TAKE
    if not gt.is_dir():
        return
    print("\nagainst the generator's ground truth (exact ray-cast depth and visibility):")
    cams = sorted(p.stem for p in (gt / "exo_depth").glob("cam*.npy"))
    for cam in cams:
        d = ArtifactStore(str(root / "vipe_results" / DEMO_TAKE / cam)).read_depth(cam, 0).astype(np.float64)
        g = np.load(gt / "exo_depth" / f"{cam}.npy").astype(np.float64)
        seen = cv2.imread(str(gt / "exo_seen_by_other" / f"{cam}.png"), cv2.IMREAD_GRAYSCALE) > 0
        ok = seen & np.isfinite(d) & (d > 0)
        rel = np.abs(d - g)[ok] / g[ok]
        print(f"  {cam}: dense exo depth AbsRel {rel.mean():.3f} (metric, no alignment, holes filled) on the "
              f"{seen.mean():.0%} of its pixels another exo camera sees")
    vis = {c: np.mean([(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) > 0).mean()
                       for f in sorted((gt / "ego_fisheye_visible" / c).glob("frame_*.png"))]) for c in cams}
    gt_best = max(cams, key=lambda c: vis[c])
    doc = json.loads(fs.read_text(fs.join(artifact_root, "render", DEMO_TAKE, "best_view.json")))
    same = "the same" if doc["best_camera"] == gt_best else "NOT the same"
    print(f"  best camera {doc['best_camera']}; by ground-truth coverage of the ego view {gt_best} "
          f"({', '.join(f'{c} {vis[c]:.0%}' for c in cams)}): {same}")


def _launch_and_finish(ws, runs: list[str], what: str, job: str, run_config: dict, partition_key: str | None = None,
                       **kw) -> bool:
    rid = ws.launch(job, run_config, partition_key=partition_key, **kw)
    runs.append(rid)
    log.info("launched run %s of %s for %s", rid, job, what)
    return _finish(ws.instance, [(rid, what)])


def _finish(instance, launched: list[tuple[str, str]]) -> bool:
    """Wait for the launched runs, then print each one's materializations, failures and checks."""
    from ._launch import run_events, wait

    done = wait(instance, [rid for rid, _ in launched])
    ok = True
    for rid, what in launched:
        ok = _report(done[rid], run_events(instance, rid), what) and ok
    return ok


def _terminate(instance, run_ids: list[str]) -> None:
    for rid in run_ids:
        run = instance.get_run_by_id(rid)
        if run is not None and not run.is_finished:
            instance.run_launcher.terminate(rid)


def _where_to_look(home: Path, root: str, catalog_db: str, runs: list[str], key: str) -> None:
    ui = "http://127.0.0.1:3000"
    print("\nwhere to look:")
    print(f"  UI          DAGSTER_HOME={home} vipe-dagster ui --port 3000, then {ui}")
    print(f"              Overview -> Timeline, Jobs -> video_pipeline -> Runs, Assets -> processed_video -> "
          f"partition '{key}' (checks per partition)")
    for rid in runs[:1]:
        print(f"  video run   {ui}/runs/{rid}")
    print(f"  artifacts   {root}  (rgb/, vipe/ previews, colmap/, render/)")
    print(f"  catalog     vipe-dagster catalog query --db {catalog_db} "
          f"\"SELECT sequence, width, height, camera_type, path_length, depth_p50 FROM video_stats\"")


def _report(run, events: list, what: str) -> bool:
    import dagster as dg

    success = run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    status = "success" if success else f"FAILED ({run.status.value if run is not None else 'missing'})"
    print(f"\nrun           {run.run_id if run is not None else '?'} for {what} ({status})")
    for ev in events:
        if ev.event_type_value != "ASSET_MATERIALIZATION":
            continue
        m = ev.event_specific_data.materialization
        print(f"\n[{m.asset_key.to_user_string()}]")
        for name, val in m.metadata.items():
            if name == "preview" or isinstance(val, dg.MarkdownMetadataValue):
                continue
            print(f"  {name:22s} {getattr(val, 'value', val)}")
    for ev in events:
        if ev.is_step_failure:
            err = ev.event_specific_data.error
            while err is not None and err.cause is not None:  # the engine's own exception, not dagster's wrapper
                err = err.cause
            print(f"\nstep {ev.step_key} FAILED: {err.message.strip() if err else ''}")
        elif ev.event_type_value == "RUN_FAILURE" and not any(e.is_step_failure for e in events):
            err = getattr(ev.event_specific_data, "error", None)
            print(f"\nrun FAILED: {err.message.strip() if err else ev.message}")
    checks = [ev.event_specific_data for ev in events if ev.event_type_value == "ASSET_CHECK_EVALUATION"]
    if checks:
        print("\nchecks:")
    for d in checks:
        status = "passed" if d.passed else f"FAILED ({d.severity.value})"
        name = f"{d.asset_key.to_user_string()}:{d.check_name}"
        part = f" [{d.partition}]" if getattr(d, "partition", None) else ""
        print(f"  {name:46s} {status}: {d.description}{part}")
    return success


def _has_op(job, name: str) -> bool:
    try:
        job.graph.node_named(name)
        return True
    except Exception:
        return False
