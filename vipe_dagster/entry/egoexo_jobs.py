"""Job lists for ``scripts/infer_vipe.sh`` and ``scripts/render_vipe.sh`` (tab-separated, one job a line).

``infer``: every exo camera video of every take, ``<DATA_DIR>/takes/<take>/<VIDEO_SUBDIR>/<cam>.mp4`` (cameras
``camNN`` / ``gpNN``; Aria streams are not exo cameras), as ``take  cam  video  num_frames``.

``render``: every ViPE result ``<VIPE_RESULTS>/<take>/<cam>[_<config>]/`` whose take has an Ego-Exo4D
``annotations/ego_pose/<split>/camera_pose/*.json`` (matched by ``metadata.take_name``), as
``take  cam  result_dir  camera_pose_json  gopro_calibs|-  online_calibration|-``. Results of takes without
a camera_pose file are reported on stderr and skipped (an absent camera is not a failure).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CAM_RE = re.compile(r"^((?:cam|gp)\d{2})(?:_.*)?$")


def _wanted(value: str | None) -> set[str] | None:
    items = [v for v in re.split(r"[\s,]+", value or "") if v]
    return set(items) or None


def infer_jobs(
    data_dir: str, video_subdir: str, takes: set[str] | None, cameras: set[str] | None
) -> list[str]:
    from ..errors import InputError
    from ..io import probe

    root = Path(data_dir) / "takes"
    if not root.is_dir():
        raise InputError(
            f"DATA_DIR {data_dir}: no takes/ folder (expected takes/<take>/{video_subdir}/<cam>.mp4)"
        )
    lines = []
    for take in sorted(p.name for p in root.iterdir() if p.is_dir()):
        if takes is not None and take not in takes:
            continue
        vdir = root / take / video_subdir
        if not vdir.is_dir():
            print(f"skip {take}: no {vdir}", file=sys.stderr)
            continue
        for video in sorted(vdir.glob("*.mp4")):
            m = CAM_RE.match(video.stem)
            if not m or video.stem != m.group(1):
                what = "the Aria ego stream" if video.stem.startswith("aria") else "no exo camera (camNN/gpNN)"
                print(f"skip {take}/{video.name}: {what}", file=sys.stderr)
                continue
            if cameras is not None and video.stem not in cameras:
                continue
            lines.append(f"{take}\t{video.stem}\t{video}\t{probe(str(video)).num_frames}")
    if takes is not None and not {ln.split(chr(9))[0] for ln in lines} >= takes:
        missing = sorted(takes - {ln.split(chr(9))[0] for ln in lines})
        raise InputError(
            f"TAKES: no camera video found for {', '.join(missing)} under {root}/<take>/{video_subdir}"
        )
    return lines


def render_jobs(
    data_dir: str, vipe_results: str, takes: set[str] | None, cameras: set[str] | None
) -> list[str]:
    from ..egoexo.takes import _pose_files
    from ..errors import InputError

    res_root = Path(vipe_results)
    if not res_root.is_dir():
        raise InputError(f"VIPE_RESULTS {vipe_results} is not a folder (run scripts/infer_vipe.sh first)")
    poses = _pose_files(data_dir)
    lines = []
    for take in sorted(p.name for p in res_root.iterdir() if p.is_dir()):
        if takes is not None and take not in takes:
            continue
        for rdir in sorted(p for p in (res_root / take).iterdir() if p.is_dir()):
            m = CAM_RE.match(rdir.name)
            if not m:
                print(f"skip {take}/{rdir.name}: the result folder names no exo camera (expected camNN, gpNN or "
                      f"an EgoX name such as camNN_lyra_fixedcam)", file=sys.stderr)
                continue
            if cameras is not None and m.group(1) not in cameras:
                continue
            if take not in poses:
                print(
                    f"skip {take}/{rdir.name}: no annotations/ego_pose/*/camera_pose/*.json with take_name "
                    f"{take!r} under {data_dir}",
                    file=sys.stderr,
                )
                continue
            traj = Path(data_dir) / "takes" / take / "trajectory"
            gopro = traj / "gopro_calibs.csv"
            online = traj / "online_calibration.jsonl"
            lines.append(
                "\t".join(
                    [
                        take,
                        m.group(1),
                        str(rdir),
                        poses[take],
                        str(gopro) if gopro.is_file() else "-",
                        str(online) if online.is_file() else "-",
                    ]
                )
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    from ..cli import guarded
    from ..logsetup import configure_logging

    p = argparse.ArgumentParser(prog="egoexo_jobs", description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["infer", "render"])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--video_subdir", default="frame_aligned_videos/downscaled/448")
    p.add_argument("--vipe_results", default="vipe_results")
    p.add_argument("--takes", default="")
    p.add_argument("--cameras", default="")
    args = p.parse_args(argv)
    configure_logging("WARNING")

    def run(a) -> int:
        if a.kind == "infer":
            lines = infer_jobs(a.data_dir, a.video_subdir, _wanted(a.takes), _wanted(a.cameras))
        else:
            lines = render_jobs(a.data_dir, a.vipe_results, _wanted(a.takes), _wanted(a.cameras))
        print("\n".join(lines))
        return 0

    return guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
