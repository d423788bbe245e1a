"""The batched camera models of vipe_dagster/camera.py against independent implementations (OpenCV
``cv2.projectPoints`` / ``cv2.fisheye`` / ``cv2.undistortPoints``, projectaria_tools, pycolmap), round trips
over each model's valid field of view, Jacobians against finite differences, rectification maps."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from vipe_dagster import camera as C

W, H = 640, 480
BROWN = [520.0, 515.0, 318.2, 244.1, -0.28, 0.07, 1.2e-3, -8e-4, 0.012]
KB = [1760.3, 1759.8, 1921.4, 1078.9, 0.0312, 0.0128, -0.0071, 0.0013]
KB_SIZE = (3840, 2160)
ARIA = [150.0, 255.5, 255.5, -0.023404, 0.093880, -0.060880, 0.0053305, 0.0033429, -0.00063563,
        5.0874e-4, -4.7471e-4, -1.13301e-3, -2.5735e-4, 9.3285e-5, 9.4250e-5]
ARIA_RGB = [1220.592, 1464.618, 1442.370, 0.41438, -0.48598, 0.13849, 1.14600, -1.66763, 0.63010,
            7.903e-4, -3.461e-4, -1.078e-3, 7.70e-5, 5.214e-4, -1.066e-4]
MEI_WIDE = [300.0, 300.0, 320.0, 240.0, 0.8, -0.05, 0.01, 5e-4, -3e-4]

# (name, params, width, height)
MODELS = [
    ("pinhole", [500.0, 505.0, 319.5, 239.5], W, H),
    ("opencv", BROWN, W, H),
    ("opencv", [509.0, 509.0, 320.0, 240.0, -0.1], W, H),  # k1 only: SIMPLE_RADIAL-like
    ("kannala_brandt", KB, *KB_SIZE),
    ("fisheye624", ARIA, 512, 512),
    ("mei", [420.0, 420.0, 320.0, 240.0, 0.8], W, H),
    ("mei", MEI_WIDE, W, H),
    ("mei", [300.0, 300.0, 320.0, 240.0, 1.6], W, H),  # xi > 1: an image circle inside the frame
    ("equirectangular", [720.0, 360.0], 720, 360),
]
IDS = ["pinhole", "brown", "k1", "kb", "aria624", "mei", "mei_dist", "mei_xi16", "equirect"]


def _cam(name, params):
    return C.camera_from_params(name, torch.tensor(params, dtype=torch.float64))


def _dirs(n, max_theta, seed=0):
    rng = np.random.default_rng(seed)
    theta = np.sqrt(rng.uniform(0, 1, n)) * max_theta
    phi = rng.uniform(-np.pi, np.pi, n)
    d = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
    return d * rng.uniform(0.3, 20.0, (n, 1))


@pytest.mark.parametrize("name,params,w,h", MODELS, ids=IDS)
def test_round_trip_over_valid_fov(name, params, w, h):
    """project(unproject(p)) == p within 1e-6 px for every valid pixel of a dense grid (plus random
    sub-pixel positions), and the valid region is most of the image."""
    cam = _cam(name, params)
    step = max(1, w // 160)
    uv = C.pixel_grid(w, h)[::step, ::step].reshape(-1, 2)
    rng = np.random.default_rng(3)
    uv = torch.cat([uv, torch.tensor(rng.uniform([-0.5, -0.5], [w - 0.5, h - 0.5], (5000, 2)))])
    rays, ok = cam.unproject_with_valid(uv, unit_norm=True)
    assert float(ok.double().mean()) > 0.5, f"only {float(ok.double().mean()):.2f} of the image valid"
    back, ok2 = cam.project(rays[ok])
    assert bool(ok2.all())
    err = (back - uv[ok]).norm(dim=-1)
    assert float(err.max()) < 1e-6, float(err.max())
    np.testing.assert_allclose(rays[ok].norm(dim=-1).numpy(), 1.0, atol=1e-12)
    # and the other way: points inside the field of view come back along their own ray
    pts = rays[ok][::7] * torch.tensor(rng.uniform(0.5, 30.0, (len(rays[ok][::7]), 1)))
    uv2, okp = cam.project(pts)
    r2, okr = cam.unproject_with_valid(uv2, unit_norm=True)
    assert bool((okp & okr).all())
    d = pts / pts.norm(dim=-1, keepdim=True)
    ang = torch.atan2(torch.linalg.cross(r2, d).norm(dim=-1), (r2 * d).sum(-1))
    assert float(ang.max()) < 1e-9


def test_brown_matches_opencv_project_and_undistort():
    cam = _cam("opencv", BROWN)
    pts = _dirs(4000, math.atan(0.9), seed=1)
    uv, ok = cam.project(torch.tensor(pts))
    assert bool(ok.all())
    fx, fy, cx, cy, k1, k2, p1, p2, k3 = BROWN
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    dist = np.array([k1, k2, p1, p2, k3])
    ref, jac_cv = cv2.projectPoints(pts[:, None], np.zeros(3), np.zeros(3), K, dist)
    assert np.abs(uv.numpy() - ref[:, 0]).max() < 1e-4
    # unprojection against cv2.undistortPoints (iterated to convergence)
    und = cv2.undistortPoints(ref, K, dist, R=np.eye(3), P=np.eye(3),
                                  criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15))[:, 0]
    rays, okr = cam.unproject_with_valid(torch.tensor(ref[:, 0]))
    assert bool(okr.all())
    assert np.abs(rays[:, :2].numpy() - und).max() * fx < 1e-4
    # numpy facade, same numbers
    uv_np, ok_np = C.project_points("opencv", BROWN, pts)
    np.testing.assert_array_equal(uv_np, uv.numpy())
    assert ok_np.all()


def test_k1_only_brown_is_colmap_simple_radial_and_pycolmap_agrees():
    pycolmap = pytest.importorskip("pycolmap")
    pts = _dirs(2000, math.atan(0.7), seed=4)
    for params in ([509.0, 509.0, 320.0, 240.0, -0.1], BROWN[:8] + [0.0], [509.0, 509.0, 320.0, 240.0, -0.04, 0.01],
                   BROWN):
        cam = _cam("opencv", params)
        model, cp = C.colmap_camera_model(cam)
        ref_cam = pycolmap.Camera(model=model, width=W, height=H, params=cp)
        ref = np.asarray(ref_cam.img_from_cam(pts))
        uv, _ = cam.project(torch.tensor(pts))
        assert np.abs(uv.numpy() - ref).max() < 1e-4, model
        back = C.camera_from_colmap(model, cp)
        np.testing.assert_allclose(back.project(torch.tensor(pts))[0].numpy(), uv.numpy(), atol=1e-9)
    assert C.colmap_camera_model("opencv", [509.0, 509.0, 320.0, 240.0, -0.1])[0] == "SIMPLE_RADIAL"
    assert C.colmap_camera_model("opencv", [509.0, 509.0, 320.0, 240.0, -0.04, 0.01])[0] == "RADIAL"
    assert C.colmap_camera_model("opencv", BROWN[:8])[0] == "OPENCV"
    assert C.colmap_camera_model("opencv", BROWN)[0] == "FULL_OPENCV"
    assert C.colmap_camera_model("opencv", [500.0, 500.0, 320.0, 240.0])[0] == "PINHOLE"
    model, cp = C.colmap_camera_model(_cam("kannala_brandt", KB))
    assert model == "OPENCV_FISHEYE"
    ref = np.asarray(pycolmap.Camera(model=model, width=KB_SIZE[0], height=KB_SIZE[1], params=cp).img_from_cam(pts))
    assert np.abs(_cam("kannala_brandt", KB).project(torch.tensor(pts))[0].numpy() - ref).max() < 1e-4
    with pytest.raises(ValueError, match="rectify"):
        C.colmap_camera_model(_cam("mei", MEI_WIDE))


def test_kannala_brandt_matches_cv2_fisheye():
    cam = _cam("kannala_brandt", KB)
    pts = _dirs(4000, 1.4, seed=2)
    uv, ok = cam.project(torch.tensor(pts))
    assert bool(ok.all())
    fx, fy, cx, cy, *d = KB
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    ref, _ = cv2.fisheye.projectPoints(pts[:, None, :], np.zeros(3), np.zeros(3), K, np.array(d))
    assert np.abs(uv.numpy() - ref[:, 0]).max() < 1e-4


@pytest.mark.parametrize("params,max_theta", [(ARIA, 1.3), (ARIA_RGB, 1.25)], ids=["slam", "rgb"])
def test_fisheye624_matches_projectaria(params, max_theta):
    try:
        from projectaria_tools.core import calibration
    except ImportError:
        pytest.skip("projectaria_tools not installed")
    proj = calibration.CameraProjection(calibration.CameraModelType.FISHEYE624, np.array(params))
    pts = _dirs(3000, max_theta, seed=5)
    ref = np.stack([proj.project(p) for p in pts])
    uv, ok = _cam("fisheye624", params).project(torch.tensor(pts))
    assert bool(ok.all())
    assert np.abs(uv.numpy() - ref).max() < 1e-4
    ref_rays = np.stack([proj.unproject(q) for q in ref])
    ours, okr = C.unproject_pixels("fisheye624", params, ref)
    assert okr.all()
    np.testing.assert_allclose(ours[:, :2], ref_rays[:, :2] / ref_rays[:, 2:], atol=1e-7)


def test_mei_matches_closed_form_and_brown_at_xi_zero():
    """MEI without distortion: the closed-form artifact maths of the same module; with xi = 0 it is the
    Brown model without k3, checked against cv2.projectPoints."""
    p5 = [420.0, 410.0, 320.0, 240.0, 0.8]
    pts = _dirs(2000, 1.5, seed=6)
    uv, ok = _cam("mei", p5).project(torch.tensor(pts))
    ref, vref = C.mei_project(pts, p5)
    assert bool(ok.all()) and vref.all()
    np.testing.assert_allclose(uv.numpy(), ref, atol=1e-9)
    p0 = [420.0, 410.0, 320.0, 240.0, 0.0, -0.2, 0.05, 1e-3, -2e-3]
    front = _dirs(2000, math.atan(0.9), seed=7)
    uv0, _ = _cam("mei", p0).project(torch.tensor(front))
    K = np.array([[420.0, 0, 320.0], [0, 410.0, 240.0], [0, 0, 1]])
    ref0, _ = cv2.projectPoints(front[:, None], np.zeros(3), np.zeros(3), K, np.array([-0.2, 0.05, 1e-3, -2e-3, 0]))
    assert np.abs(uv0.numpy() - ref0[:, 0]).max() < 1e-4
    # field of view: the module's closed-form MEI field of view
    fov = C.camera_fov_deg(_cam("mei", p5), W, H)
    ref_fov = C.field_of_view("MEI", p5, W, H)
    assert abs(fov[0] - ref_fov.x_deg) < 1e-3 and abs(fov[1] - ref_fov.y_deg) < 1e-3
    # behind the camera beyond the one-to-one angle: invalid
    _, okb = _cam("mei", [150.0, 150.0, 320.0, 240.0, 1.6]).project(torch.tensor([[0.0, 0.0, -1.0], [0.3, 0, -1.0]]))
    assert not bool(okb[0]) and not bool(okb[1])


def test_equirectangular_matches_panorama_rays():
    uu, vv = np.meshgrid(np.arange(0, 720, 7.0), np.arange(0, 360, 5.0))
    ref = C.panorama_rays(uu.ravel(), vv.ravel(), 720, 360)
    rays, ok = C.unproject_pixels("equirectangular", [720, 360], np.stack([uu.ravel(), vv.ravel()], 1), unit_norm=True)
    assert ok.all()
    np.testing.assert_allclose(rays, ref, atol=1e-12)
    # forward (+z) is the image centre, up (-y) the top row, right (+x) a quarter turn right
    uv, _ = C.project_points("equirectangular", [720, 360], [[0, 0, 1.0], [0, -1.0, 1e-9], [1.0, 0, 0]])
    np.testing.assert_allclose(uv[0], [359.5, 179.5], atol=1e-9)
    assert abs(uv[1, 1] + 0.5) < 1e-6
    np.testing.assert_allclose(uv[2], [539.5, 179.5], atol=1e-9)
    assert C.camera_fov_deg(_cam("equirectangular", [720, 360]), 720, 360) == (360.0, 180.0)


@pytest.mark.parametrize("name,params,w,h", MODELS, ids=IDS)
def test_jacobians_against_finite_differences(name, params, w, h):
    cam = _cam(name, params)
    rng = np.random.default_rng(8)
    uv = torch.tensor(rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h], (200, 2)))
    rays, ok = cam.unproject_with_valid(uv, unit_norm=True)
    pts = rays[ok] * torch.tensor(rng.uniform(0.5, 5.0, (int(ok.sum()), 1)))
    _, _, jp, jk = cam.project_with_jacobians(pts)
    eps = 1e-6
    num_p = torch.stack([(cam.project(pts + eps * e)[0] - cam.project(pts - eps * e)[0]) / (2 * eps)
                         for e in torch.eye(3, dtype=torch.float64)], -1)
    scale = max(1.0, float(jp.abs().max()))
    assert float((jp - num_p).abs().max()) < 1e-5 * scale
    cols = []
    for i in range(cam.num_params):
        h_i = eps * max(1.0, abs(float(cam.params[i])))
        dp = torch.zeros(cam.num_params, dtype=torch.float64)
        dp[i] = h_i
        plus = C.camera_from_params(name, cam.params + dp).project(pts)[0]
        minus = C.camera_from_params(name, cam.params - dp).project(pts)[0]
        cols.append((plus - minus) / (2 * h_i))
    num_k = torch.stack(cols, -1)
    scale = max(1.0, float(jk.abs().max()))
    assert float((jk - num_k).abs().max()) < 1e-5 * scale, (jk - num_k).abs().amax(dim=(0, 1))
    # batched params: params (B, P) with points (B, N, 3) give the same Jacobians as one camera at a time
    two = C.camera_from_params(name, torch.stack([cam.params, cam.params]))
    _, _, jp2, jk2 = two.project_with_jacobians(torch.stack([pts, pts]))
    np.testing.assert_allclose(jp2[1].numpy(), jp.numpy(), atol=1e-10)
    np.testing.assert_allclose(jk2[0].numpy(), jk.numpy(), atol=1e-10)


def test_brown_validity_stops_where_the_lens_model_folds():
    cam = _cam("opencv", [500.0, 500.0, 320.0, 240.0, -0.1])
    r_fold = 1 / math.sqrt(0.3)  # d/dr (r - 0.1 r^3) = 0
    _, ok = cam.project(torch.tensor([[0.99 * r_fold, 0, 1.0], [1.01 * r_fold, 0, 1.0], [0, 0, -1.0]]))
    assert ok.tolist() == [True, False, False]


def test_rectification_maps_match_cv2_undistort_and_keep_the_valid_fov():
    cam = _cam("opencv", BROWN)
    fx, fy, cx, cy, k1, k2, p1, p2, k3 = BROWN
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    dist = np.array([k1, k2, p1, p2, k3])
    pin = C.rectifying_pinhole(cam, W, H)
    mx, my = C.rectify_maps(cam, pin, W, H)
    assert mx.shape == (H, W) and mx.dtype == np.float32
    # "valid": every output pixel samples inside the recorded image
    assert mx.min() >= -0.5 and mx.max() <= W - 0.5 and my.min() >= -0.5 and my.max() <= H - 0.5
    # and it is the widest such view: 1 % wider pushes some pixel outside
    wider = C.rectify_maps(cam, [pin[0] * 0.99, pin[1] * 0.99, pin[2], pin[3]], W, H)
    assert wider[0].min() < -0.5 or wider[0].max() > W - 0.5 or wider[1].min() < -0.5 or wider[1].max() > H - 0.5
    # the maps against OpenCV: cv2.initUndistortRectifyMap with the same new camera matrix
    Kn = np.array([[pin[0], 0, pin[2]], [0, pin[1], pin[3]], [0, 0, 1.0]])
    rx, ry = cv2.initUndistortRectifyMap(K, dist, None, Kn, (W, H), cv2.CV_32FC1)
    assert max(np.abs(mx - rx).max(), np.abs(my - ry).max()) < 1e-3
    # "full": every valid pixel of the recorded border stays in view
    full = C.rectifying_pinhole(cam, W, H, mode="full")
    assert full[0] < pin[0]
    border = np.concatenate([np.stack([np.linspace(0, W - 1, 50), np.zeros(50)], 1),
                             np.stack([np.zeros(50), np.linspace(0, H - 1, 50)], 1)])
    und = cv2.undistortPoints(border[:, None], K, dist, R=np.eye(3), P=np.eye(3),
                                  criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15))[:, 0]
    u = und[:, 0] * full[0] + full[2]
    v = und[:, 1] * full[1] + full[3]
    assert u.min() >= -0.5 - 1e-6 and v.min() >= -0.5 - 1e-6
    # a remapped image: a checkerboard corner seen through the lens lands on the pinhole projection
    X = np.array([[0.31, -0.22, 1.0]])
    src_uv, _ = C.project_points("opencv", BROWN, X)
    img = np.zeros((H, W), np.float32)
    iu, iv = np.round(src_uv[0]).astype(int)
    img[iv - 1:iv + 2, iu - 1:iu + 2] = 1.0
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR)
    vs, us = np.nonzero(out > 0.5)
    target = (X[0, :2] / X[0, 2]) * pin[:2] + pin[2:]
    assert abs(us.mean() - target[0]) < 1.0 and abs(vs.mean() - target[1]) < 1.0


def test_fov_and_equivalent_pinhole():
    pin = _cam("pinhole", [500.0, 505.0, 319.5, 239.5])
    fx, fy = C.camera_fov_deg(pin, W, H)
    assert abs(fx - math.degrees(2 * math.atan(W / 1000))) < 1e-9
    assert abs(fy - math.degrees(2 * math.atan(H / 1010))) < 1e-9
    # Brown: the border rays from OpenCV's undistortion
    cam = _cam("opencv", BROWN)
    K = np.array([[BROWN[0], 0, BROWN[2]], [0, BROWN[1], BROWN[3]], [0, 0, 1.0]])
    ends = np.array([[BROWN[2] - W / 2, BROWN[3]], [BROWN[2] + W / 2, BROWN[3]]])
    und = cv2.undistortPoints(ends[:, None], K, np.array(BROWN[4:]), R=np.eye(3), P=np.eye(3),
                                  criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15))[:, 0]
    ref = math.degrees(math.atan(abs(und[0, 0])) + math.atan(abs(und[1, 0])))
    assert abs(C.camera_fov_deg(cam, W, H)[0] - ref) < 1e-3
    np.testing.assert_allclose(_cam("mei", [420.0, 410.0, 320.0, 240.0, 0.8]).equivalent_pinhole().numpy(),
                               [420 / 1.8, 410 / 1.8, 320, 240])
    np.testing.assert_allclose(_cam("fisheye624", ARIA).equivalent_pinhole().numpy(), [150, 150, 255.5, 255.5])
    with pytest.raises(ValueError, match="360"):
        _cam("equirectangular", [720, 360]).equivalent_pinhole()


def test_valid_pixel_mask_of_an_image_circle():
    """MEI with xi = 1.6: the valid pixels are the image circle of radius f / sqrt(xi^2 - 1)."""
    f, xi = 150.0, 1.6
    mask = C.valid_pixel_mask(_cam("mei", [f, f, 320.0, 240.0, xi]), W, H).numpy()
    r_circle = f / math.sqrt(xi * xi - 1)
    v, u = np.mgrid[0:H, 0:W]
    r = np.hypot(u - 320.0, v - 240.0)
    assert mask[r < r_circle - 1].all() and not mask[r > r_circle + 1].any()


def test_slam_radial_helpers_are_the_camera_module_and_match_opencv():
    from vipe_dagster.slam.geometry import distort_radial, undistort_radial

    intr = np.array([510.0, 505.0, 322.0, 236.0])
    k = np.array([-0.06, 0.012])
    K = np.array([[510.0, 0, 322.0], [0, 505.0, 236.0], [0, 0, 1]])
    uv = np.random.default_rng(11).uniform([0, 0], [640, 480], (3000, 2))
    rays = np.stack([(uv[:, 0] - 322.0) / 510.0, (uv[:, 1] - 236.0) / 505.0, np.ones(len(uv))], 1)
    ref, _ = cv2.projectPoints(rays[:, None], np.zeros(3), np.zeros(3), K, np.array([k[0], k[1], 0, 0]))
    d = distort_radial(uv, intr, k)
    assert np.abs(d - ref[:, 0]).max() < 1e-4
    assert np.abs(undistort_radial(d, intr, k) - uv).max() < 1e-6


def test_autograd_jacobians_do_not_load_triton():
    """torch.func imports torch._dynamo and triton; triton's LLVM next to Mesa's llvmpipe (EGL rendering in the
    same process) segfaults, so the autograd models must not use it."""
    import subprocess
    import sys

    code = ("import sys, torch; from vipe_dagster import camera as C; "
            "cam = C.camera_from_params('MEI', torch.tensor([300., 300., 320., 240., 0.8], dtype=torch.float64)); "
            "pts = torch.tensor([[0.1, 0.2, 1.0], [0.3, -0.1, 2.0]], dtype=torch.float64); "
            "assert cam.project_with_jacobians(pts)[2].shape == (2, 2, 3); "
            "print(sorted(m for m in ('triton', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
