"""``python run.py key=value ...``: ViPE's batch runner with Hydra-style overrides, on this engine.

Example (the reference's smoke test)::

    python run.py pipeline=default streams=raw_mp4_stream streams.base_path=samples/dog-example.mp4 \\
        streams.frame_end=64 pipeline.output.save_artifacts=true

``streams.base_path`` is one video, a folder of videos (``streams=frame_dir_stream``: one image folder or a
folder of image folders), a list ``[a.mp4,b.mp4]`` or a ``.txt`` file with one path per line. Every input
is validated (readable, frame range, preset weights) before the first one runs; then each video runs with
its own progress bars, a failure is recorded and the next video runs, and a summary table ends the run
(exit code 0 when every video succeeded or was skipped, 1 otherwise). The accepted keys are listed in
:mod:`vipe_dagster.compat.overrides` and ``python run.py --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass

from ..errors import ConfigError, InputError, VipeError

log = logging.getLogger("vipe_dagster.run")


@dataclass
class Outcome:
    source: str
    name: str
    frames: int
    status: str  # ok | skipped | failed
    seconds: float = 0.0
    detail: str = ""


def expand_inputs(base_paths: list[str], stream: str) -> list[str]:
    """The videos (or image folders) ``streams.base_path`` names, in order."""
    from pathlib import Path

    from ..io import fs
    from ..io.video import IMAGE_EXTS, VIDEO_EXTS

    def isdir(uri: str) -> bool:
        f, p = fs.get_fs(uri)
        return bool(f.isdir(p))

    def has_images(uri: str) -> bool:
        return any(Path(e).suffix.lower() in IMAGE_EXTS for e in fs.listdir(uri))

    out: list[str] = []
    for p in base_paths:
        if not fs.exists(p):
            raise InputError(f"streams.base_path: {p} does not exist")
        if p.lower().endswith(".txt") and not isdir(p):
            base = Path(p).parent
            for line in fs.read_text(p).splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = (
                        line
                        if fs.is_remote(line) or Path(line).is_absolute() or fs.exists(line)
                        else str(base / line)
                    )
                    out.extend(expand_inputs([q], stream))
            continue
        if not isdir(p):
            if stream == "frame_dir_stream":
                raise InputError(
                    f"streams.base_path: {p} is a file, but streams=frame_dir_stream expects a folder "
                    f"of images (or a folder of image folders)"
                )
            out.append(p)
            continue
        if stream == "frame_dir_stream":
            if has_images(p):
                out.append(p)
                continue
            subs = [fs.join(p, e) for e in sorted(fs.listdir(p)) if not e.startswith(".")]
            subs = [s for s in subs if isdir(s) and has_images(s)]
            if not subs:
                raise InputError(
                    f"streams.base_path: {p} holds no images ({', '.join(IMAGE_EXTS)}) and no "
                    f"folders of images"
                )
            out.extend(subs)
            continue
        vids = [
            fs.join(p, e)
            for e in sorted(fs.listdir(p))
            if Path(e).suffix.lower() in VIDEO_EXTS and not e.startswith(".")
        ]
        if not vids:
            hint = " (for folders of images use streams=frame_dir_stream)" if has_images(p) else ""
            raise InputError(f"streams.base_path: {p} holds no videos ({', '.join(VIDEO_EXTS)}){hint}")
        out.extend(vids)
    return out


def _table(rows: list[Outcome]) -> str:
    head = ("sequence", "frames", "status", "seconds", "frames/s", "detail")
    body = [
        (
            r.name,
            str(r.frames),
            r.status,
            f"{r.seconds:.1f}",
            f"{r.frames / r.seconds:.2f}" if r.status == "ok" and r.seconds > 0 else "-",
            r.detail[:90],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..compat.overrides import apply_overrides
    from ..compat.run import execute, prepare
    from ..io import ArtifactStore, probe

    plan = apply_overrides(args.overrides)
    inputs = expand_inputs(plan.base_paths, plan.stream)
    requests = []
    seen: dict[str, str] = {}
    for src in inputs:  # everything is validated before the first video runs
        n = probe(src).num_frames
        end = None if plan.frame_end == -1 else min(plan.frame_end, n) - 1
        if plan.frame_start > n - 1:
            raise InputError(
                f"streams.frame_start {plan.frame_start} is past the last frame {n - 1} of {src}"
            )
        req = prepare(
            src,
            plan.output,
            plan.config.preset,
            start_frame=plan.frame_start,
            end_frame=end,
            frame_skip=plan.frame_skip,
            fixed_camera=plan.fixed_camera,
            intrinsics=plan.intrinsics,
            depth_model=plan.depth_model,
            hf_cache=plan.hf_cache,
            output_resolution=plan.output_resolution,
            save_slam_map=plan.save_slam_map,
            config=plan.config,
        )
        if req.name in seen:
            raise ConfigError(
                f"{seen[req.name]} and {src} would both write sequence {req.name!r} into "
                f"{plan.output}; give inputs with different names"
            )
        seen[req.name] = src
        requests.append(req)
    log.info("%d input(s), preset %s, output %s", len(requests), plan.config.preset, plan.output)
    store = ArtifactStore(plan.output)
    outcomes: list[Outcome] = []
    for req in tqdm(requests, desc="videos", unit="video", disable=len(requests) < 2):
        if (
            plan.skip_exists
            and store.exists("manifest", req.name)
            and "pipeline" in store.read_manifest(req.name)
        ):
            outcomes.append(Outcome(req.source, req.name, req.num_frames, "skipped", detail="results exist"))
            continue
        t0 = time.perf_counter()
        try:
            res = execute(req, progress=True, wait=args.wait)
            outcomes.append(
                Outcome(
                    req.source,
                    req.name,
                    req.num_frames,
                    "ok",
                    res.seconds,
                    f"{req.config.preset}, {res.summary()['resolution']['size']}",
                )
            )
        except (VipeError, OSError) as exc:
            log.error("%s failed: %s", req.source, exc)
            outcomes.append(
                Outcome(
                    req.source,
                    req.name,
                    req.num_frames,
                    "failed",
                    time.perf_counter() - t0,
                    " ".join(str(exc).split()),
                )
            )
        except Exception as exc:  # a bug on one video must not lose the others' results
            log.exception("%s failed", req.source)
            outcomes.append(
                Outcome(
                    req.source,
                    req.name,
                    req.num_frames,
                    "failed",
                    time.perf_counter() - t0,
                    f"{type(exc).__name__}: {exc}",
                )
            )
    print(_table(outcomes), flush=True)
    return 0 if all(o.status != "failed" for o in outcomes) else 1


def build_parser() -> argparse.ArgumentParser:
    from ..compat import overrides

    p = argparse.ArgumentParser(
        prog="run.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ViPE's run.py with Hydra-style key=value overrides, on vipe-dagster's engine.",
        epilog=(overrides.__doc__ or "").split("\n", 1)[1],
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait when another run holds a sequence's lock (default: fail at once)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    from . import run_entry

    return run_entry(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
