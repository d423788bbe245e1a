"""Evaluate a ViPE-format prediction folder against a ground-truth folder.

Poses are matched by their ``inds`` (frame numbers); depth maps by their index in the depth zip, streamed
one frame at a time. Predicted intrinsics and depth at another resolution are mapped to the
ground-truth resolution first.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .. import camera as cammod
from ..errors import ArtifactError, InputError
from ..io import ArtifactStore
from .metrics import ate, depth_metrics, focal_error, mask_metrics, mask_scores, rpe

log = logging.getLogger(__name__)

DEPTH_ALIGN = ("median", "lstsq", "none", "pose")


def _resolution(store: ArtifactStore, name: str) -> tuple[int, int] | None:
    """(width, height) of a sequence's frames: from the rgb video, else from the first depth map."""
    if store.exists("rgb", name):
        s = store.open_rgb(name)
        return s.width, s.height
    if store.exists("depth", name):
        d = next(store.iter_depth(name, [0]))[1]
        return d.shape[1], d.shape[0]
    return None


def frame_pairs(n_pred: int, n_gt: int, p_inds: np.ndarray, g_inds: np.ndarray) -> tuple[list[int], list[int]]:
    """Pair per-frame zip members (depth, masks) of prediction and ground truth.

    When a zip holds one member per pose, member ``k`` is frame ``inds[k]``, so members are paired by
    frame number (a prediction over a sub-range still lines up). Otherwise members pair by position.
    Returns the member indices ``(pred_members, gt_members)``.
    """
    if n_pred == len(p_inds) and n_gt == len(g_inds):
        _, a, b = np.intersect1d(p_inds, g_inds, return_indices=True)
        return [int(i) for i in a], [int(i) for i in b]
    n = min(n_pred, n_gt)
    return list(range(n)), list(range(n))


def _focal_section(p_int: np.ndarray, g_int: np.ndarray, model: str, p_res: tuple[int, int],
                   g_res: tuple[int, int]) -> dict[str, Any]:
    """Focal error of matched frames (prediction mapped to the ground-truth resolution); the field-of-view
    error follows the camera model (MEI: border-ray angles, :func:`vipe_dagster.camera.field_of_view`)."""
    pk = cammod.scale_intrinsics(np.mean(p_int.astype(np.float64), axis=0), g_res[0] / p_res[0],
                                 g_res[1] / p_res[1], model)
    gk = np.mean(g_int.astype(np.float64), axis=0)
    fx_e, fy_e = focal_error(pk[0], gk[0], g_res[0]), focal_error(pk[1], gk[1], g_res[1])
    sec = {"fx_pred": float(pk[0]), "fx_gt": float(gk[0]), "fy_pred": float(pk[1]), "fy_gt": float(gk[1]),
           "percent": 0.5 * (fx_e["percent"] + fy_e["percent"]),
           "fx_percent": fx_e["percent"], "fy_percent": fy_e["percent"],
           "fov_deg_error": fx_e["fov_deg_error"], "frames": int(len(p_int)), "model": model}
    if model == "MEI" and len(pk) > 4 and len(gk) > 4:
        fov_p = cammod.field_of_view(model, pk, *g_res).x_deg
        fov_g = cammod.field_of_view(model, gk, *g_res).x_deg
        sec.update(xi_pred=float(pk[4]), xi_gt=float(gk[4]), xi_error=abs(float(pk[4] - gk[4])))
        if fov_p is not None and fov_g is not None:
            sec.update(fov_deg_error=abs(fov_p - fov_g), fov_pred_deg=fov_p, fov_gt_deg=fov_g)
    return sec


def evaluate_sequence(pred: ArtifactStore, gt: ArtifactStore, name: str, align: str = "sim3", rpe_delta: int = 1,
                      depth_align: str = "median", depth_stride: int = 1, static_only: bool = False) -> dict[str, Any]:
    """Metrics of one sequence: ``ate``, ``ate_se3``, ``rpe``, ``focal`` and ``depth`` sections."""
    if depth_align not in DEPTH_ALIGN:
        raise InputError(f"depth alignment {depth_align!r} is not one of {', '.join(DEPTH_ALIGN)}")
    if depth_stride < 1:
        raise InputError(f"depth stride must be >= 1, got {depth_stride}")
    for store, what in ((pred, "prediction"), (gt, "ground truth")):
        if not store.exists("pose", name):
            raise ArtifactError(f"{what} {store.root} has no poses for sequence {name!r} "
                                f"(expected {store.path('pose', name)})")
    p_pose, p_inds = pred.read_pose(name)
    g_pose, g_inds = gt.read_pose(name)
    common, pi, gi = np.intersect1d(p_inds, g_inds, return_indices=True)
    # frames the prediction flags as not measured (lost: held pose) are not scored, but counted
    p_valid = pred.read_pose_valid(name)[pi]
    n_invalid = int((~p_valid).sum())
    common, pi, gi = common[p_valid], pi[p_valid], gi[p_valid]
    if len(common) < 3:
        raise ArtifactError(f"{name}: prediction and ground truth share {len(common)} frame indices "
                            f"(prediction {len(p_inds)} frames, ground truth {len(g_inds)}); need >= 3")
    out: dict[str, Any] = {"sequence": name, "frames": int(len(common)),
                           "frames_pred": int(len(p_inds)), "frames_gt": int(len(g_inds)),
                           "frames_invalid": n_invalid}
    P, G = p_pose[pi].astype(np.float64), g_pose[gi].astype(np.float64)
    out["ate"] = ate(P, G, align=align)
    out["ate_se3"] = ate(P, G, align="se3") if align != "se3" else out["ate"]
    out["rpe"] = rpe(P, G, delta=min(rpe_delta, len(common) - 1), align=align)

    g_res = _resolution(gt, name)
    p_res = _resolution(pred, name) or g_res
    p_man, g_man = _manifest(pred, name), _manifest(gt, name)
    if pred.exists("intrinsics", name) and gt.exists("intrinsics", name) and g_res is not None:
        p_int, p_iinds, p_types = pred.read_intrinsics(name)
        g_int, g_iinds, g_types = gt.read_intrinsics(name)
        _, a, b = np.intersect1d(p_iinds, g_iinds, return_indices=True)
        if len(a):
            models = ({p_types[i] for i in a}, {g_types[i] for i in b})
            if models[0] != models[1] or len(models[0]) != 1:
                out["focal_note"] = (f"camera models differ (prediction {'/'.join(sorted(models[0]))}, ground "
                                     f"truth {'/'.join(sorted(models[1]))}): intrinsics not compared")
            elif models[0] == {"PANORAMA"}:
                out["focal_note"] = cammod.PANORAMA_FOV_NOTE + "; no focal to compare"
            else:
                out["focal"] = _focal_section(p_int[a], g_int[b], next(iter(models[0])), p_res, g_res)
                gcam = g_man.get("camera") or {}
                k1 = ((p_man.get("pose") or {}).get("intrinsics") or {}).get("k1")
                if gcam.get("model") == "SIMPLE_RADIAL" and k1 is not None:  # self-calibrated k1 vs the lens's
                    k1_gt = float(gcam["params"][3])
                    out["focal"].update(k1_pred=float(k1), k1_gt=k1_gt, k1_error=abs(float(k1) - k1_gt))
    if pred.exists("depth", name) and gt.exists("depth", name):
        lens = _rectified_lens_maps(pred, p_man, g_man, name, p_res, g_res)
        out["depth"] = _depth_section(pred, gt, name, depth_align, depth_stride, static_only,
                                      pose_scale=out["ate"]["scale"], inds=(p_inds, g_inds), gt_maps=lens)
        if lens is not None:
            out["depth"]["gt_resampled"] = ("the prediction's frames are a rectified pinhole of the ground truth's "
                                            "distorted camera: the ground-truth depth is sampled (nearest) where "
                                            "each predicted pixel's ray meets the distorted image")
    if pred.exists("mask", name) and gt.exists("mask", name):
        out["masks"] = _mask_section(pred, gt, name, inds=(p_inds, g_inds))
    return out


def _mask_section(pred: ArtifactStore, gt: ArtifactStore, name: str, inds) -> dict[str, Any]:
    """Dynamic-object masks: pooled IoU/precision/recall over the sequence plus the mean per-frame IoU."""
    import cv2

    pm, gm = frame_pairs(pred.mask_count(name), gt.mask_count(name), *inds)
    n = len(pm)
    if n == 0:
        raise ArtifactError(f"{name}: prediction and ground-truth masks share no frame")
    tp = fp = fn = 0
    ious = []
    for (_, mp), (_, mg) in zip(pred.iter_masks(name, pm), gt.iter_masks(name, gm), strict=True):
        if mp.shape != mg.shape:
            mp = cv2.resize(mp, (mg.shape[1], mg.shape[0]), interpolation=cv2.INTER_NEAREST)
        m = mask_metrics(mp, mg)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        ious.append(m["iou"])
    return {**mask_scores(tp, fp, fn), "mean_frame_iou": float(np.mean(ious)), "frames": n}


def _manifest(store: ArtifactStore, name: str) -> dict:
    """The sequence's manifest, or ``{}`` where there is none (e.g. ground truth written as bare arrays)."""
    return store.read_manifest(name) if store.exists("manifest", name) else {}


# ground-truth cameras with a lens distortion that a prediction may have rectified (COLMAP model names)
_DISTORTED = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE")


def _rectified_lens_maps(pred: ArtifactStore, pm: dict, g_man: dict, name: str, p_res, g_res):
    """``cv2.remap`` maps (at the ground-truth resolution) from the prediction's pixels to the ground truth's when
    the ground-truth camera is distorted and the prediction's frames were rectified to a pinhole (lens given or
    self-calibrated); ``None`` when both images are the same camera's (pixels compare directly)."""
    gcam = g_man.get("camera") or {}
    if gcam.get("model") not in _DISTORTED or g_res is None or not pred.exists("intrinsics", name):
        return None
    self_cal = ((pm.get("pose") or {}).get("intrinsics") or {}).get("distortion") or {}
    if not (self_cal.get("rectified") or (pm.get("camera") or {}).get("rectified")):
        return None
    p_int, _, types = pred.read_intrinsics(name)
    if set(types) != {"PINHOLE"}:
        return None
    k = cammod.scale_intrinsics(np.mean(p_int.astype(np.float64), axis=0), g_res[0] / (p_res or g_res)[0],
                                g_res[1] / (p_res or g_res)[1], "PINHOLE")
    lens = cammod.camera_from_colmap(gcam["model"], np.asarray(gcam["params"], np.float64))
    return cammod.rectify_maps(lens, k, *g_res)


def _depth_section(pred: ArtifactStore, gt: ArtifactStore, name: str, depth_align: str, stride: int,
                   static_only: bool, pose_scale: float, inds, gt_maps=None) -> dict[str, Any]:
    import cv2

    n_p, n_g = pred.depth_count(name), gt.depth_count(name)
    pm, gm = frame_pairs(n_p, n_g, *inds)
    pm, gm = pm[::stride], gm[::stride]
    if not pm:
        raise ArtifactError(f"{name}: prediction ({n_p} depth maps) and ground truth ({n_g}) share no frame")
    use_masks = static_only and gt.exists("mask", name)
    masks = gt.iter_masks(name, gm) if use_masks else None
    align = {"none": None, "pose": None}.get(depth_align, depth_align)
    per: list[dict[str, float]] = []
    for (_, dp), (k, dg) in zip(pred.iter_depth(name, pm), gt.iter_depth(name, gm), strict=True):
        if dp.shape != dg.shape:
            dp = cv2.resize(dp, (dg.shape[1], dg.shape[0]), interpolation=cv2.INTER_NEAREST)
        if gt_maps is not None:
            dg = cv2.remap(dg, gt_maps[0], gt_maps[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=np.nan)
        if depth_align == "pose":
            dp = dp * pose_scale
        valid = None
        if masks is not None:
            _, m = next(masks)
            valid = m == 0
        try:
            per.append(depth_metrics(dp, dg, valid=valid, align=align))
        except InputError as exc:
            raise ArtifactError(f"{name}: depth frame {k}: {exc}") from exc
    keys = ("abs_rel", "sq_rel", "rmse", "delta1", "delta2", "delta3", "valid_fraction", "scale")
    agg = {key: float(np.nanmean([m[key] for m in per])) for key in keys}
    agg.update({"frames": len(per), "frames_pred": n_p, "frames_gt": n_g, "align": depth_align,
                "static_only": bool(use_masks),
                "abs_rel_max_frame": int(inds[1][gm[int(np.nanargmax([m["abs_rel"] for m in per]))]])
                if any(np.isfinite(m["abs_rel"]) for m in per) else None})
    if depth_align == "pose":
        agg["scale"] = float(pose_scale)
    return agg


def evaluate(pred_root: str, gt_root: str, sequences: list[str] | None = None, **kwargs) -> dict[str, Any]:
    """Evaluate every sequence present in both folders (or the named ones)."""
    pred, gt = ArtifactStore(pred_root), ArtifactStore(gt_root)
    if sequences:
        names = list(sequences)
    else:
        names = sorted(set(pred.sequences()) & set(gt.sequences()))
        if not names:
            raise ArtifactError(f"no sequence is present in both {pred_root} ({pred.sequences() or 'none'}) and "
                                f"{gt_root} ({gt.sequences() or 'none'})")
    results = [evaluate_sequence(pred, gt, n, **kwargs) for n in names]
    return {"pred": str(pred_root), "gt": str(gt_root), "sequences": results}


def format_table(result: dict[str, Any]) -> str:
    """Human-readable table: one block of rows per sequence."""
    lines = []
    for r in result["sequences"]:
        a, a2, p = r["ate"], r["ate_se3"], r["rpe"]
        rows = [
            ("frames (common / pred / gt)", f"{r['frames']} / {r['frames_pred']} / {r['frames_gt']}"),
            (f"ATE RMSE ({a['align']})", f"{a['rmse']:.4f} m  ({a['rmse_pct_of_path']:.3f} % of "
                                         f"{a['path_length']:.2f} m path)"),
            ("ATE mean / median / max", f"{a['mean']:.4f} / {a['median']:.4f} / {a['max']:.4f} m"),
            ("ATE RMSE (se3)", f"{a2['rmse']:.4f} m"),
            ("alignment scale", f"{a['scale']:.5f}"),
            ("orientation RMSE", f"{a['rot_rmse_deg']:.3f} deg"),
            (f"RPE trans (delta {p['delta']})", f"{p['trans_rmse']:.4f} m rmse, {p['trans_pct_per_m']:.2f} %/m"),
            (f"RPE rot (delta {p['delta']})", f"{p['rot_rmse_deg']:.4f} deg rmse, {p['rot_deg_per_m']:.3f} deg/m"),
        ]
        if "focal" in r:
            f = r["focal"]
            rows.append(("focal error", f"{f['percent']:.3f} % (fx {f['fx_pred']:.2f} vs {f['fx_gt']:.2f}), "
                                        f"FOV {f['fov_deg_error']:.3f} deg"))
            if "xi_error" in f:
                rows.append(("MEI xi error", f"{f['xi_error']:.4f} (xi {f['xi_pred']:.4f} vs {f['xi_gt']:.4f})"))
            if "k1_error" in f:
                rows.append(("radial k1 error", f"{f['k1_error']:.4f} (k1 {f['k1_pred']:.4f} vs {f['k1_gt']:.4f})"))
        elif "focal_note" in r:
            rows.append(("focal error", r["focal_note"]))
        if "depth" in r:
            d = r["depth"]
            rows += [
                (f"depth AbsRel ({d['align']})", f"{d['abs_rel']:.4f}"),
                ("depth delta<1.25", f"{d['delta1']:.4f}"),
                ("depth RMSE", f"{d['rmse']:.4f} m"),
                ("depth valid fraction", f"{d['valid_fraction']:.4f} ({d['frames']} frames)"),
            ]
            if d.get("gt_resampled"):
                rows.append(("depth ground truth", "sampled through the lens (prediction rectified to pinhole)"))
        if "masks" in r:
            mk = r["masks"]
            rows.append(("dynamic mask IoU", f"{mk['iou']:.4f} (precision {mk['precision']:.3f}, "
                                             f"recall {mk['recall']:.3f}, {mk['frames']} frames)"))
        width = max(len(k) for k, _ in rows)
        lines.append(f"== {r['sequence']}")
        lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
