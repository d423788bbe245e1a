"""Register videos as partitions of ``videos`` on the local Dagster instance (no run is started).

Each video gets a key ``[a-z0-9_-]+`` (its sanitised file stem), a registry entry beside the artifacts
(``sources/<key>.json``: URI, data version, frame range, skip, processing size) and a ``raw_video``
observation with its data version. Materialize from the UI, or with ``--run``. Imports dagster lazily.
"""

from __future__ import annotations

import os

from ._common import add_frame_range

NAME = "register"
HELP = "register videos as Dagster partitions (key, source URI, frame range) without running anything"


def add_arguments(p):
    p.add_argument("videos", nargs="+", help="video files or s3:// URIs")
    p.add_argument("--key", default=None, help="partition key (only with a single video)")
    p.add_argument("--artifacts", default=None,
                   help="artifact root (default: $VIPE_ARTIFACT_ROOT or data/artifacts)")
    p.add_argument("--dagster-home", "--dagster_home", dest="dagster_home", default=None,
                   help="Dagster instance folder (default: $DAGSTER_HOME or .dagster_home)")
    add_frame_range(p)
    p.add_argument("--long_side", "--long-side", dest="long_side", type=int, default=512,
                   help="processing long side in px (0 = keep the source size)")


def run(args) -> int:
    import logging

    from ..definitions import REPO_ROOT, ensure_dagster_home
    from ..errors import InputError

    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.key and len(args.videos) > 1:
        raise InputError("--key names one partition; pass a single video with it")
    ensure_dagster_home(args.dagster_home)
    import dagster as dg

    from assets_defs._common import DATA_VERSION_TAG, VIDEOS
    from resources.artifacts import DEFAULT_ROOT
    from vipe_dagster.io import ArtifactStore
    from vipe_dagster.registry import VideoRegistry

    root = args.artifacts or os.environ.get("VIPE_ARTIFACT_ROOT") or str(REPO_ROOT / DEFAULT_ROOT)
    registry = VideoRegistry(ArtifactStore(root))
    instance = dg.DagsterInstance.get()
    try:
        for video in args.videos:
            entry, changed = registry.register(video, key=args.key, start_frame=args.start_frame,
                                               end_frame=args.end_frame, frame_skip=args.frame_skip,
                                               long_side=args.long_side)
            new = not instance.has_dynamic_partition(VIDEOS.name, entry.key)
            if new:
                instance.add_dynamic_partitions(VIDEOS.name, [entry.key])
            if new or changed:
                instance.report_runless_asset_event(dg.AssetObservation(
                    asset_key="raw_video", partition=entry.key, tags={DATA_VERSION_TAG: entry.data_version},
                    metadata={"uri": dg.MetadataValue.path(entry.uri)}))
            state = "new" if new else ("updated" if changed else "unchanged")
            print(f"{entry.key}\t{state}\t{entry.uri}\t{entry.data_version}")
    finally:
        instance.dispose()
    return 0
