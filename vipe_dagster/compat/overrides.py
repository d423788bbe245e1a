"""ViPE's ``run.py`` overrides (Hydra ``key=value`` syntax) mapped onto this engine's configuration.

Accepted keys (anything else is refused with the list of what is known):

- ``pipeline=<preset>``: the preset (applied first, wherever it appears, as Hydra picks config groups first);
- ``streams=raw_mp4_stream | frame_dir_stream``,
  ``streams.base_path=<video | folder | [a.mp4,b.mp4] | list.txt>``,
  ``streams.frame_start`` (0), ``streams.frame_end`` (exclusive, -1 = to the end; clamped to each video),
  ``streams.frame_skip`` (1), ``streams.cached`` (accepted; frames are always streamed);
- ``pipeline.output.path`` (``vipe_results``), ``pipeline.output.save_artifacts`` (always true here: the
  stages read each other's files), ``pipeline.output.save_viz`` (true, as in the reference),
  ``pipeline.output.save_slam_map`` (false), ``pipeline.output.skip_exists`` (false),
  ``pipeline.output.resolution`` / ``output_resolution`` (``source`` as the reference writes, or
  ``processing``);
- ``pipeline.post.depth_align_model=null`` (no depth: poses, intrinsics and masks only; any model name keeps
  the depth stage, which runs multi-view stereo), ``pipeline.init.instance=null`` (no dynamic masks),
  ``pipeline.init.intrinsics=geocalib`` (estimate the focal), ``pipeline.init.camera_type=pinhole``,
  ``pipeline.slam.optimize_intrinsics=false`` (keep the FoV prior's focal);
- this engine: ``depth_model=REPO_ID:FILENAME``, ``hf_cache=DIR``, ``intrinsics=fx,fy,cx,cy`` (source px),
  ``assume_fixed_camera_pose=true``, and **any dotted path into** :class:`~vipe_dagster.config.PipelineConfig`
  (``pose.long_side=0``, ``depth_config.num_planes=32``, ``pipeline.pose.ba.window=8``, ...), validated by
  pydantic.

Values: ``null``/``~`` (None), ``true``/``false``, numbers, ``[a,b]`` lists, quoted or bare strings.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..config import PipelineConfig, preset
from ..errors import ConfigError

STREAMS = ("raw_mp4_stream", "frame_dir_stream")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$")

REFERENCE_KEYS = (
    "pipeline",
    "streams",
    "streams.base_path",
    "streams.frame_start",
    "streams.frame_end",
    "streams.frame_skip",
    "streams.cached",
    "pipeline.output.path",
    "pipeline.output.save_artifacts",
    "pipeline.output.save_viz",
    "pipeline.output.save_slam_map",
    "pipeline.output.skip_exists",
    "pipeline.output.resolution",
    "pipeline.post.depth_align_model",
    "pipeline.init.instance",
    "pipeline.init.intrinsics",
    "pipeline.init.camera_type",
    "pipeline.slam.optimize_intrinsics",
)
ENGINE_KEYS = ("output_resolution", "depth_model", "hf_cache", "intrinsics", "assume_fixed_camera_pose")


def parse_value(text: str) -> Any:
    """A Hydra-style value: null, booleans, numbers, [lists], quoted or bare strings."""
    t = text.strip()
    if t in ("null", "None", "~", "NULL", "Null"):
        return None
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    if t.startswith("[") and t.endswith("]"):
        inner = t[1:-1].strip()
        return [parse_value(p) for p in _split_list(inner)] if inner else []
    if _NUMBER.match(t):
        return int(t) if re.fullmatch(r"[+-]?\d+", t) else float(t)
    return t


def _split_list(text: str) -> list[str]:
    out, cur, quote = [], [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


@dataclass
class RunPlan:
    """Everything ``run.py`` was asked for, after the overrides were applied and validated."""

    config: PipelineConfig
    stream: str = "raw_mp4_stream"
    base_paths: list[str] = field(default_factory=list)
    frame_start: int = 0
    frame_end: int = -1  # exclusive; -1 = to the end
    frame_skip: int = 1
    output: str = "vipe_results"
    save_slam_map: bool = False
    skip_exists: bool = False
    output_resolution: str = "source"
    depth_model: str | None = None
    hf_cache: str | None = None
    intrinsics: str | None = None
    fixed_camera: bool = False
    applied: list[str] = field(default_factory=list)


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"override {key}={v!r}: expected true or false")
    return v


def _int(key: str, v: Any, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
        raise ConfigError(
            f"override {key}={v!r}: expected an integer" + (f" >= {lo}" if lo is not None else "")
        )
    return v


def _split(arg: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    key = key.strip().lstrip("+")
    if not sep or not key or key.startswith("~"):
        raise ConfigError(
            f"override {arg!r}: expected key=value (Hydra syntax, e.g. pipeline=default or "
            f"streams.base_path=video.mp4)"
        )
    return key, value


def _config_paths(cfg: PipelineConfig) -> set[str]:
    paths: set[str] = set()

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            p = f"{prefix}{k}"
            paths.add(p)
            if isinstance(v, dict):
                walk(v, p + ".")

    walk(cfg.model_dump(), "")
    paths.update({"depth_config.learned"})
    return paths


def _set_path(cfg: PipelineConfig, path: str, value: Any, raw: str) -> PipelineConfig:
    """``cfg`` with the dotted ``path`` set to ``value``, validated as a whole by pydantic."""
    data = cfg.model_dump()
    parts = path.split(".")
    node = data
    for p in parts[:-1]:
        if node.get(p) is None and p == "learned":
            node[p] = {}
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"override {raw}: {path} is not a field of the engine configuration")
        node = node[p]
    if parts[-1] not in node and not (parts[-2:-1] == ["learned"]):
        raise ConfigError(f"override {raw}: {path} is not a field of the engine configuration")
    node[parts[-1]] = value
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        raise ConfigError(f"override {raw}: {reasons}") from None


def apply_overrides(args: list[str]) -> RunPlan:
    """Parse and validate ``run.py``'s overrides (see the module docstring) into a :class:`RunPlan`."""
    items = [_split(a) for a in args]
    names = [v for k, v in items if k == "pipeline"]
    cfg = preset(str(parse_value(names[-1]))) if names else preset("default")
    cfg.visualize = True  # the reference's save_viz default
    plan = RunPlan(config=cfg)
    known = _config_paths(cfg)
    for key, raw_value in items:
        raw = f"{key}={raw_value}"
        v = parse_value(raw_value)
        if key == "pipeline":
            continue
        plan.applied.append(raw)
        if key == "streams":
            if v not in STREAMS:
                raise ConfigError(f"override {raw}: streams must be one of {', '.join(STREAMS)}")
            plan.stream = v
        elif key == "streams.base_path":
            if v is None or v == "" or v == []:
                raise ConfigError(f"override {raw}: give a video, a folder of videos or a list [a.mp4,b.mp4]")
            plan.base_paths = [str(x) for x in v] if isinstance(v, list) else [str(v)]
        elif key == "streams.frame_start":
            plan.frame_start = _int(key, v, 0)
        elif key == "streams.frame_end":
            plan.frame_end = _int(key, v, -1)
        elif key == "streams.frame_skip":
            plan.frame_skip = _int(key, v, 1)
        elif key == "streams.cached":
            _bool(key, v)  # frames are always streamed; caching changes nothing but memory
        elif key == "pipeline.output.path":
            if not v:
                raise ConfigError(f"override {raw}: give an output folder")
            plan.output = str(v)
        elif key == "pipeline.output.save_artifacts":
            if not _bool(key, v):
                raise ConfigError(
                    f"override {raw}: this engine always writes the artifacts (its stages read each "
                    f"other's files); drop the override or set it to true"
                )
        elif key == "pipeline.output.save_viz":
            plan.config.visualize = _bool(key, v)
        elif key == "pipeline.output.save_slam_map":
            plan.save_slam_map = _bool(key, v)
        elif key == "pipeline.output.skip_exists":
            plan.skip_exists = _bool(key, v)
        elif key in ("pipeline.output.resolution", "output_resolution"):
            if v not in ("source", "processing"):
                raise ConfigError(f"override {raw}: expected source or processing")
            plan.output_resolution = v
        elif key == "pipeline.post.depth_align_model":
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"override {raw}: expected null or a model name")
            plan.config.depth = v is not None
        elif key == "pipeline.init.instance":
            if v is None:
                plan.config.masks = False
            elif isinstance(v, dict | str):
                plan.config.masks = True
            else:
                raise ConfigError(f"override {raw}: expected null (no dynamic masks)")
        elif key == "pipeline.init.intrinsics":
            if v != "geocalib":
                raise ConfigError(
                    f"override {raw}: only geocalib (estimate the focal) is available from run.py; "
                    f"give known intrinsics with intrinsics=fx,fy,cx,cy"
                )
        elif key == "pipeline.init.camera_type":
            if v == "mei":  # the wide_angle preset's camera (vipe_dagster.wide_angle)
                plan.config.camera = "mei"
            elif v == "panorama":  # the panorama preset's camera (vipe_dagster.panorama)
                plan.config.camera = "panorama"
            elif v != "pinhole":
                raise ConfigError(f"override {raw}: camera types pinhole, mei and panorama are available")
        elif key == "pipeline.slam.optimize_intrinsics":
            plan.config.pose.intrinsics.estimate_focal = _bool(key, v)
        elif key == "depth_model":
            plan.depth_model = None if v is None else str(v)
        elif key == "hf_cache":
            plan.hf_cache = None if v is None else str(v)
        elif key == "intrinsics":
            plan.intrinsics = ",".join(str(x) for x in v) if isinstance(v, list) else str(v)
        elif key == "assume_fixed_camera_pose":
            plan.fixed_camera = _bool(key, v)
        else:
            path = (
                key[len("pipeline.") :]
                if key.startswith("pipeline.") and key[len("pipeline.") :] in known
                else key
            )
            if path not in known and not path.startswith("depth_config.learned."):
                close = difflib.get_close_matches(
                    path, sorted(known | set(REFERENCE_KEYS) | set(ENGINE_KEYS)), n=3
                )
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"override {raw}: unknown key {key!r}{hint} (reference keys: "
                    f"{', '.join(REFERENCE_KEYS)}; or a dotted path into the engine config such as "
                    f"pose.long_side)"
                )
            plan.config = _set_path(plan.config, path, v, raw)
    if not plan.base_paths:
        raise ConfigError("no input: give streams.base_path=<video | folder | [a.mp4,b.mp4]>")
    if plan.frame_end != -1 and plan.frame_end <= plan.frame_start:
        raise ConfigError(
            f"streams.frame_end ({plan.frame_end}, exclusive) must be greater than streams.frame_start "
            f"({plan.frame_start}), or -1 for the whole video"
        )
    return plan
