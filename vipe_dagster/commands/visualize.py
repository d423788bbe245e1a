"""Open a browser 3D viewer (viser) on a ViPE-format result folder (ours or a released dataset's).

Per sequence: the current frame's reliable-depth point cloud coloured from rgb, all camera frustums
along the trajectory, the frame image on the current camera, a frame slider and a play button,
toggles for dynamic points and the mean background, and the ego trajectory/view when a render
exists under render/<take>/<camera>/. Frames load on demand, so long videos open fast.
"""

from __future__ import annotations

NAME = "visualize"
HELP = "browser 3D viewer for a ViPE-format result folder"


def add_arguments(p):
    p.add_argument("dir", help="artifact root: a folder or s3://bucket/prefix (holds pose/, rgb/, depth/, ...)")
    p.add_argument("--port", type=int, default=20540, help="HTTP/websocket port")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to share on the network)")
    p.add_argument("--sequence", default=None, help="show only this sequence name (default: all, chosen in the UI)")
    p.add_argument("--max_points", "--max-points", dest="max_points", type=int, default=60_000,
                   help="points per frame at most (sets the grid step, >= 2 px)")
    p.add_argument("--cache_frames", "--cache-frames", dest="cache_frames", type=int, default=16,
                   help="decoded frames kept in memory")
    p.add_argument("--use_mean_bg", "--use-mean-bg", dest="use_mean_bg", action="store_true",
                   help="show the per-pixel mean background from the start (EgoX viewer flag)")
    p.add_argument("--write_video", "--write-video", dest="write_video", action="store_true",
                   help="instead of serving, write vipe/<n>_vis.mp4 (RGB | depth | mask | trajectory) per sequence")
    p.add_argument("--exit_after", "--exit-after", dest="exit_after", type=float, default=None,
                   help="stop the server after this many seconds (for scripted checks)")


def run(args) -> int:
    import logging
    import signal
    import threading
    import time

    from ..viz.viewer import ResultViewer, ViewerOptions

    log = logging.getLogger("vipe_dagster.visualize")
    if args.write_video:
        return _write_videos(args)
    stop = threading.Event()
    try:  # before the viewer starts, so a SIGTERM at any time after start-up shuts down cleanly
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except ValueError:  # not the main thread (embedded use): Ctrl-C / exit_after still work
        pass
    opts = ViewerOptions(max_points_per_frame=args.max_points, cache_frames=args.cache_frames,
                         mean_bg_on_start=bool(getattr(args, "use_mean_bg", False)))
    viewer = ResultViewer(args.dir, host=args.host, port=args.port, sequence=args.sequence, options=opts,
                          verbose=False)
    log.info("viewer for %s at %s (Ctrl-C to stop)", args.dir, viewer.url)
    print(f"open {viewer.url} in a browser", flush=True)
    deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
    try:
        # short waits: a SIGTERM delivered to another thread only runs its Python handler once the
        # main thread wakes up
        while not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()
    return 0


def _write_videos(args) -> int:
    from tqdm import tqdm

    from ..errors import ArtifactError, InputError
    from ..io import ArtifactStore
    from ..viz.video import write_vis_video

    store = ArtifactStore(args.dir)
    names = [n for n in store.sequences() if store.exists("pose", n)]
    if not names:
        raise ArtifactError(f"No ViPE artifacts found in {store.root} (expected pose/<name>.npz)")
    if args.sequence is not None:
        if args.sequence not in names:
            raise InputError(f"sequence {args.sequence!r} not found in {store.root}; available: {', '.join(names)}")
        names = [args.sequence]
    for name in names:
        with tqdm(desc=name, unit="frame") as bar:
            def step(done: int, total: int, bar=bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            uri = write_vis_video(store, name, progress=step)
        print(uri, flush=True)
    return 0
