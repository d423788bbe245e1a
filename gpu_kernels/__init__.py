"""Batched torch kernels shared by SLAM, depth and rendering (CPU and CUDA; device/dtype follow inputs).

Modules: :mod:`gpu_kernels.lie` (SO3/SE3/Sim3), :mod:`gpu_kernels.cameras` (pinhole, Kannala-Brandt,
Aria Fisheye624), :mod:`gpu_kernels.ba` (Levenberg-Marquardt bundle adjustment), :mod:`gpu_kernels.splat`
(z-buffered point splatting). Nothing here imports dagster or vipe_dagster.
"""
