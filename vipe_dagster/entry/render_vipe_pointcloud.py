"""``python ego_view_rendering/render_vipe_pointcloud.py --input_dir ...``: the EgoX ego-prior renderer.

Every flag of the reference renderer is accepted, in both of its input modes:

- release (meta.json): ``--input_dir``, ``--out_dir``, ``--meta_json_path``, ``--point_size`` (1.0),
  ``--start_frame`` (0), ``--end_frame``, ``--batch_size`` (8), ``--only_bg``, ``--use_mean_bg``,
  ``--fish_eye_rendering``, ``--online_calibration_path``;
- Ego-Exo4D native (pre-release): ``--ego_camera_pose_path`` (camera_pose/<take_uid>.json),
  ``--exo_camera_pose_path`` (gopro_calibs.csv), ``--source_start_frame``/``--source_end_frame`` (the take
  frames of ViPE frames start..end; they must span as many frames);
- and this engine's (every setting of ``vipe_dagster.render.config.EgoRenderConfig``): ``--near_clip``,
  ``--voxel_size``, ``--normalize``, ``--resolution``, ``--fps``, ``--output``, ``--artifact_name``,
  ``--backend``, ``--device``, ``--subsample``, ``--points_per_pixel``, ``--background``, ``--threads``,
  ``--cloud_cache``.

``--batch_size`` is accepted and has no effect: frames are rendered one at a time (the reference parses
it and never uses it). ``--end_frame`` may be omitted or -1 (the last ViPE frame). The output is the
pre-release layout ``<out_dir>/<take>/<cam>/test_output_<config>[_mean_bg][_fisheye]_pts<size>/`` with
``frame_%06d.png``, ``ego_Prior.mp4``, ``render_meta.json`` and ``ego_pose.npz``, where
``<take>/<cam>_<config>`` are the last two folders of ``--input_dir``. The geometry fixes listed in the
README apply (real Aria RGB calibration, exact 90-degree rotation, validation before the point cloud is
built). The work is
``vipe-dagster render-ego`` (:func:`vipe_dagster.render.ego.render_ego`).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from ..commands import render_ego

    p = argparse.ArgumentParser(
        prog="render_vipe_pointcloud.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Render the exo ViPE point cloud into the ego (Aria) camera.",
        epilog=(__doc__ or "").split("\n", 2)[2],
    )
    from ..render.config import REFERENCE_SCRIPT_PRESET

    render_ego.add_arguments(p, defaults=REFERENCE_SCRIPT_PRESET)  # --point_size 1.0, as the reference script
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    from ..commands import render_ego
    from . import run_entry

    return run_entry(build_parser, render_ego.run, argv)


if __name__ == "__main__":
    sys.exit(main())
