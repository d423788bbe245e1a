"""From exo videos to the best ego view in a real (ephemeral SQLite) Dagster instance: a generated take with
four distinct exo cameras (videos only, no ViPE result), ``exo_inference`` (fixed camera, metric depth from
the calibrated exo rig) -> ``ego_render`` -> ``best_ego_view``, with the lineage video -> inference -> render ->
best view, scored against the generator's ground truth (projectaria_tools-cast ego views)."""

import json
from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.egoexo import EgoExoResource
from vipe_dagster.definitions import build_definitions
from vipe_dagster.egoexo.takes import discover_raw_takes
from vipe_dagster.synth.egoexo_take import generate_rig_take

RES = 160
FRAMES = 12


def _psnr(a, b, m):
    err = ((a.astype(float) - b.astype(float)) ** 2)[m].mean()
    return 10 * np.log10(255.0 ** 2 / err)


@pytest.mark.timeout(1800)
def test_exo_videos_to_best_ego_view(tmp_path, instance):
    take = generate_rig_take(str(tmp_path / "takes"), num_cameras=4, num_frames=FRAMES, resolution=RES)
    art = ArtifactStoreResource(root=str(tmp_path / "artifacts"))
    egoexo = EgoExoResource(takes_root=take.root)
    defs = build_definitions({"artifacts": art, "egoexo": egoexo})
    raw = discover_raw_takes(take.root)
    assert raw.view_keys == [f"synth_rig_1__{c}" for c in take.cams] and raw.skipped == []
    # the takes sensor registers the take and its four views from the videos and asks for their exo inference
    from assets_defs.egoexo import egoexo_takes

    tick = egoexo_takes(dg.build_sensor_context(instance=instance, resources={"egoexo": egoexo}))
    assert sorted((r.job_name, r.partition_key) for r in tick.run_requests) == [("exo_view_job", k)
                                                                                for k in raw.view_keys]
    adds = {r.partitions_def_name: list(r.partition_keys) for r in tick.dynamic_partitions_requests}
    assert adds == {"takes": ["synth_rig_1"], "ego_views": raw.view_keys}
    for name, keys in adds.items():
        instance.add_dynamic_partitions(name, keys)

    # lineage: exo_video -> exo_inference -> ego_render -> best_ego_view
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("exo_inference")).parent_keys == {dg.AssetKey("exo_video")}
    assert dg.AssetKey("exo_inference") in graph.get(dg.AssetKey("ego_render")).parent_keys
    assert graph.get(dg.AssetKey("best_ego_view")).parent_keys == {dg.AssetKey("ego_render")}

    # every 2nd exo pixel, as the reference renders (every pixel of a 448 px video reaches the 20-nearest splat
    # limit at this ego size and biases the colours)
    cfg = {"ops": {"ego_render": {"config": {"resolution": RES, "subsample": 2, "min_coverage": 0.1,
                                                     "normalize": True}}}}
    md, stats = {}, {}
    for key in raw.view_keys:
        cam = key.split("__")[1]
        res = defs.resolve_job_def("exo_view_job").execute_in_process(instance=instance, partition_key=key,
                                                                       run_config=cfg, raise_on_error=False)
        assert res.success, [e.event_specific_data.error.to_string() for e in res.all_events if e.is_step_failure]
        mats = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
                for e in res.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
        inf, ren = mats["exo_inference"].metadata, mats["ego_render"].metadata
        assert inf["scale"].value == "metric" and inf["depth_source"].value == "rig calibration"
        assert Path(inf["vipe_dir"].value) == Path(take.root) / "vipe_results" / "synth_rig_1" / cam
        md[cam] = ren
        # the render against the ground-truth ego view, on the pixels this exo camera really sees
        out = Path(ren["render_dir"].value)
        cov, psnr = [], []
        for i in range(FRAMES):
            ours = cv2.cvtColor(cv2.imread(str(out / f"frame_{i:06d}.png")), cv2.COLOR_BGR2RGB)
            vis = take.gt_ego_visible(cam, i)
            covered = ours.sum(axis=2) > 0
            cov.append((covered & vis).sum() / max(vis.sum(), 1))
            psnr.append(_psnr(ours, take.gt_ego(i), covered & vis))
        stats[cam] = (float(np.mean(cov)), float(np.mean(psnr)), float(inf["covered_fraction"].value))
        print(f"{cam}: rig depth covered {stats[cam][2]:.3f}; ego render covers {stats[cam][0]:.3f} of the GT-visible "
              f"pixels, PSNR {stats[cam][1]:.2f} dB there")

    # every view rendered: the next tick asks for the take's best view (and no more inference)
    tick = egoexo_takes(dg.build_sensor_context(instance=instance, resources={"egoexo": egoexo}))
    assert [(r.job_name, r.partition_key) for r in tick.run_requests] == [("best_ego_view_job", "synth_rig_1")]
    res = defs.resolve_job_def("best_ego_view_job").execute_in_process(instance=instance, partition_key="synth_rig_1",
                                                                       raise_on_error=False)
    assert res.success
    best = next(e.event_specific_data.materialization.metadata for e in res.all_events
                if e.event_type_value == "ASSET_MATERIALIZATION")
    gt_best = max(take.cams, key=lambda c: np.mean([take.gt_ego_visible(c, i).mean() for i in range(FRAMES)]))
    print(f"best camera {best['best_camera'].value} (ground truth by coverage: {gt_best})")
    bv = Path(best["best_view_dir"].value)
    assert bv == tmp_path / "artifacts" / "best_ego_view_rendering" / "synth_rig_1"
    meta = json.loads((bv / "metadata.json").read_text())
    assert meta["best_camera"] == best["best_camera"].value
    assert [f["source_frame"] for f in meta["frames"]] == list(range(FRAMES))
    for sub in ("ego_Prior", "exo_GT", "ego_GT"):
        assert len(list((bv / sub).glob("frame_*.png"))) == FRAMES
    # ego_GT is the Aria video (raw orientation, H.264 4:2:0): rotated clockwise it is the ground-truth upright
    # view, and no other orientation comes close
    ego0 = cv2.cvtColor(cv2.imread(str(bv / "ego_GT" / "frame_000000.png")), cv2.COLOR_BGR2RGB)
    errs = [np.abs(np.rot90(ego0, k).astype(float) - take.gt_ego(0)).mean() for k in (-1, 0, 1, 2)]
    assert errs[0] < 0.5 * min(errs[1:]), errs
    # the materialized lineage: every step of the chain has a materialization for the best camera's view
    key = f"synth_rig_1__{best['best_camera'].value}"
    for asset in ("exo_inference", "ego_render"):
        assert instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1).records

    # floors under what this measures (12 frames of 598x448 video, 160 px ego, normalised splats: cam01 99.8 % /
    # 22.8 dB, best camera cam02 95 % / 22.3 dB; at 320x240 with every exo pixel it was 87 % / 22.0 and 64 % /
    # 16.3). The target (>= 90 % of the GT-visible pixels at >= 28 dB) is NOT met on PSNR: the rig
    # confirms 36-86 % of an exo camera's depth and the fill of the rest is where the render goes wrong (see
    # the egoexo_rig bench: the same chain from the exact depth reaches about 28 dB at 224 px).
    assert best["best_camera"].value == gt_best
    assert stats["cam01"][0] >= 0.8 and stats["cam01"][1] >= 20.0
    assert stats[gt_best][0] >= 0.55 and stats[gt_best][1] >= 15.0
    assert all(stats[c][2] > 0.05 for c in take.cams)
