"""List the takes of a raw Ego-Exo4D root (local folder or s3://) and every camera, video or file that
discovery leaves out, with the reason; ``--check <take>/<cam>`` runs the camera-ID check of one view."""

from __future__ import annotations

import json

NAME = "takes"
HELP = "list Ego-Exo4D takes, their exo cameras and ego streams, and what was skipped and why"


def add_arguments(p):
    p.add_argument("root", help="Ego-Exo4D root holding takes/ and annotations/ego_pose/ (folder or s3:// URI)")
    p.add_argument("--video-subdir", "--video_subdir", default="frame_aligned_videos/downscaled/448",
                   help="frame-aligned videos of a take, relative to takes/<take>/")
    p.add_argument("--check", metavar="TAKE/CAM", default=None,
                   help="camera-ID check of one view (take name as on disk, e.g. cmu_bike01_2/cam02)")
    p.add_argument("--frames", default=None, metavar="FIRST:LAST",
                   help="take frames the check requires in the ego trajectory (default: all of them)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _check(args) -> int:
    from ..egoexo.camera_check import check_camera_ids
    from ..egoexo.takes import pose_index
    from ..errors import InputError

    take, sep, cam = args.check.rpartition("/")
    if not sep or not take or not cam:
        raise InputError(f"--check {args.check!r}: expected <take>/<cam>, e.g. cmu_bike01_2/cam02")
    if args.frames:
        try:
            first, last = (int(v) for v in args.frames.split(":"))
        except ValueError:
            raise InputError(f"--frames {args.frames!r}: expected FIRST:LAST, e.g. 0:48") from None
    else:
        from ..egoexo import formats as F

        pose = pose_index(args.root).get(take)
        frames = F.read_camera_pose_json(pose.path).ego.frames if pose else [0]
        first, last = int(frames[0]), int(frames[-1])
    rep = check_camera_ids(args.root, take, cam, first, last, args.video_subdir)
    if args.json:
        print(json.dumps({"passed": rep.passed, "problems": rep.problems, "facts": rep.facts}, indent=2))
    else:
        print(("PASS " if rep.passed else "FAIL ") + rep.describe())
    return 0 if rep.passed else 1


def run(args) -> int:
    from ..egoexo.takes import discover_raw_takes
    from ..errors import InputError
    from ..io import fs

    fs.preflight_read(args.root, "Ego-Exo4D root")
    if not fs.listdir(fs.join(args.root, "takes")):
        raise InputError(f"{args.root}: no takes/<take>/ folder (expected the Ego-Exo4D layout takes/<take>/"
                         f"{args.video_subdir}/<cam>.mp4 and annotations/ego_pose/<split>/camera_pose/<uid>.json)")
    if args.check:
        return _check(args)
    found = discover_raw_takes(args.root, video_subdir=args.video_subdir)
    if args.json:
        print(json.dumps({"takes": [{
            "take": t.take, "key": t.take_key, "take_uid": t.take_uid, "split": t.split,
            "camera_pose_json": t.camera_pose_json, "gopro_calibs": t.gopro_calibs,
            "online_calibration": t.online_calibration, "exo_videos": t.exo_videos, "ego_videos": t.ego_videos,
            "ego_label": t.ego_label, "ego_frames": t.ego_frames} for t in found.takes],
            "skipped": [{"take": t, "item": c, "reason": r} for t, c, r in found.skipped]}, indent=2))
        return 0
    for t in found.takes:
        frames = f"[{t.ego_frames[0]}, {t.ego_frames[1]}]" if t.ego_frames else "none"
        print(f"{t.take} (key {t.take_key}, uid {t.take_uid}): exo {', '.join(sorted(t.exo_videos)) or 'none'}; "
              f"ego {t.ego_label} frames {frames}, videos {', '.join(sorted(t.ego_videos)) or 'none'}")
    print(f"{len(found.takes)} take(s), {len(found.view_keys)} take x camera view(s), "
          f"{len(found.skipped)} skipped")
    for t, c, r in found.skipped:
        print(f"skipped {t}/{c}: {r}")
    return 0
