"""One source of truth for configuration: the engine's pydantic models declare every setting once; the
command line (``vipe_dagster.options``) and the Dagster run config (``assets_defs/_config.py``) are generated
from them, and nothing reads the environment at import."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from pydantic import BaseModel

from vipe_dagster import cli, vipe_cli
from vipe_dagster.config import (
    BAConfig,
    IntrinsicsConfig,
    KeyframeConfig,
    MapConfig,
    PipelineConfig,
    PoseConfig,
    TrackingConfig,
)
from vipe_dagster.depth.config import DepthConfig, LearnedDepthConfig, MetricScaleConfig
from vipe_dagster.export.colmap.options import ColmapExportOptions as ColmapExportConfig
from vipe_dagster.masks.config import MaskConfig
from vipe_dagster.options import add_model_arguments, dest_of, field_default, model_fields, model_values
from vipe_dagster.render import config as render_config
from vipe_dagster.render.config import EGO_PRIOR_PRESET, REFERENCE_SCRIPT_PRESET, EgoRenderConfig

REPO = Path(__file__).resolve().parents[1]

ENGINE_MODELS = (PipelineConfig, PoseConfig, TrackingConfig, KeyframeConfig, BAConfig, MapConfig, IntrinsicsConfig,
                 DepthConfig, LearnedDepthConfig, MetricScaleConfig, MaskConfig, ColmapExportConfig, EgoRenderConfig)

# Named presets: the only way a front end may start from other values than a model's defaults. Each is a
# module-level constant beside its model (documented there and in docs/dagster.md).
NAMED_PRESETS = {"vipe_dagster.render.config.EGO_PRIOR_PRESET": EGO_PRIOR_PRESET,
                 "vipe_dagster.render.config.REFERENCE_SCRIPT_PRESET": REFERENCE_SCRIPT_PRESET}

# Hand-written options / run-config fields that share a name with an engine setting but are a different
# setting (so their default is not the model's). Each entry says why; anything else must agree.
DIFFERENT_SETTING = {
    ("ingest", "long_side"): "ingest's resize (None = keep the source size), not the pose stage's processing size",
    ("IngestConfig", "long_side"): "per-run override of the partition's registered value (None = registered)",
    ("infer", "output"): "-o: the artifact root", ("ingest", "output"): "-o: the artifact root",
    ("synth", "output"): "-o: the output folder",
    ("demo", "long_side"): "the demo registers its sample clip at 384 px so that the whole graph runs quickly",
    ("demo", "preset"): "the slam_pose preset of the demo run (PoseRunConfig.preset's default, pose_only)",
    ("depth", "masks"): "whether the depth command also writes masks (PipelineConfig.masks switches infer's stage)",
    ("download", "depth"): "whether the depth attribute is downloaded",
    ("PoseRunConfig", "preset"): "the slam_pose asset's preset: depth and masks are assets of their own, so the "
                                 "pose step runs pose_only (PipelineConfig.preset is infer's whole pipeline)",
}


def _parsers():
    """(command words, parser) of ``vipe-dagster`` and ``vipe``, nested subcommands included."""
    yield from cli.iter_parsers(cli.build_parser(), ("vipe-dagster",))
    yield from cli.iter_parsers(vipe_cli.build_parser(), ("vipe",))


def _normalise(v):
    return list(v) if isinstance(v, tuple) else v


def test_every_generated_option_defaults_to_the_model_default():
    checked = 0
    for words, parser in _parsers():
        actions = {a.dest: a for a in parser._actions}
        for spec in getattr(parser, "model_options", []):
            info = spec.model.model_fields[spec.field]
            if info.is_required():  # no default in the model: a required option without one
                assert actions[spec.dest].required and parser.get_default(spec.dest) is None, spec.flags
                checked += 1
                continue
            model_default = field_default(info)
            assert _normalise(parser.get_default(spec.dest)) == _normalise(model_default), (
                f"{' '.join(words)} {spec.flags[0]}: argparse default {parser.get_default(spec.dest)!r}, "
                f"{spec.model.__name__}.{spec.field} default {model_default!r}")
            # and parsing no option yields the model's default (what the command then passes on)
            checked += 1
    assert checked >= 50  # depth, to-colmap, infer (x2) generate their options from the models


def test_hand_written_options_agree_with_the_models():
    """An option written by hand under the name of an engine setting must have the model's default."""
    fields: dict[str, list[tuple[type[BaseModel], str]]] = {}
    for model in ENGINE_MODELS:
        for name in model_fields(model):
            fields.setdefault(dest_of(model, name), []).append((model, name))
    problems = []
    for words, parser in _parsers():
        generated = {s.dest for s in getattr(parser, "model_options", [])}
        for action in parser._actions:
            if action.dest in generated or action.dest not in fields or not action.option_strings:
                continue
            if (words[-1], action.dest) in DIFFERENT_SETTING:
                continue
            wants = {f"{m.__name__}.{n}": _normalise(field_default(m.model_fields[n])) for m, n in fields[action.dest]}
            if action.default is not None and _normalise(action.default) not in wants.values():
                problems.append(f"{' '.join(words)} {action.option_strings[0]}: default {action.default!r}, "
                                f"engine defaults {wants}")
    assert not problems, "\n".join(problems)


def test_parsing_the_defaults_gives_the_model_defaults():
    p = argparse.ArgumentParser()
    add_model_arguments(p, DepthConfig)
    add_model_arguments(p, ColmapExportConfig, exclude=("device",))
    args = p.parse_args([])
    assert DepthConfig(**model_values(args, DepthConfig)) == DepthConfig()
    assert ColmapExportConfig(**model_values(args, ColmapExportConfig)) == ColmapExportConfig()
    args = p.parse_args(["--num-planes", "32", "--depth_range", "0.5", "9", "--no-sgm", "--format", "bin",
                         "--no_rectify_mei"])
    cfg = DepthConfig(**model_values(args, DepthConfig))
    assert (cfg.num_planes, cfg.depth_range, cfg.sgm) == (32, (0.5, 9.0), False)
    ex = ColmapExportConfig(**model_values(args, ColmapExportConfig))
    assert (ex.fmt, ex.rectify_mei) == ("bin", False)
    with pytest.raises(SystemExit):
        p.parse_args(["--format", "ply"])  # Literal -> choices


def _config_classes():
    import assets_defs

    for info in pkgutil.iter_modules(assets_defs.__path__):
        mod = importlib.import_module(f"assets_defs.{info.name}")
        for obj in vars(mod).values():
            if inspect.isclass(obj) and issubclass(obj, dg.Config) and obj is not dg.Config \
                    and obj.__module__.startswith("assets_defs"):
                yield obj


def _schema_defaults(cls) -> dict:
    fields = cls.to_config_schema().as_field().config_type.fields
    return {k: (f.default_value if f.default_provided else None) for k, f in fields.items()}


def _check_generated_defaults(cls, path: str = "") -> int:
    """Every generated field of ``cls`` (and of its nested sections, recursively) defaults to its engine
    model's default, or to the value of the named preset the class was built with. Returns fields checked."""
    where = path or cls.__name__
    schema = _schema_defaults(cls)
    presets = getattr(cls, "preset_defaults", {})
    if presets:
        assert any(presets == p for p in NAMED_PRESETS.values()), f"{where}: preset {presets} is not a named preset"
    checked = 0
    for field, (model, name) in getattr(cls, "field_sources", {}).items():
        want = _normalise(presets[field] if field in presets else field_default(model.model_fields[name]))
        assert schema[field] == want, f"{where}.{field}: {schema[field]!r} != {model.__name__}.{name} {want!r}"
        checked += 1
    for field, (model, name) in getattr(cls, "section_sources", {}).items():
        section = cls.model_fields[field].annotation
        engine = field_default(model.model_fields[name])  # e.g. PoseConfig.ba -> BAConfig()
        assert isinstance(engine, section.engine_model), f"{where}.{field}"
        want = {k: _normalise(v) for k, v in engine.model_dump().items() if k in section.engine_fields}
        assert schema[field] == want, f"{where}.{field}: {schema[field]!r} != {model.__name__}.{name} {want!r}"
        checked += _check_generated_defaults(section, f"{where}.{field}")
    return checked


def test_dagster_run_config_defaults_are_the_model_defaults():
    classes = {c.__name__: c for c in _config_classes()}
    for name in ("DepthRunConfig", "MaskRunConfig", "PoseRunConfig", "ColmapExportConfig", "EgoRenderRunConfig"):
        assert hasattr(classes[name], "engine_model"), f"{name} is not built from an engine model"
    checked = 0
    for cls in classes.values():
        schema = _schema_defaults(cls)
        sources = {**getattr(cls, "field_sources", {}), **getattr(cls, "section_sources", {})}
        checked += _check_generated_defaults(cls)
        # hand-written fields (and classes) that carry an engine setting's name must agree with it too
        for field, value in schema.items():
            if field in sources or (cls.__name__, field) in DIFFERENT_SETTING:
                continue
            wants = [_normalise(field_default(m.model_fields[field])) for m in ENGINE_MODELS
                     if field in m.model_fields]
            assert value is None or not wants or value in wants, f"{cls.__name__}.{field}: {value!r} not in {wants}"
    assert checked >= 140  # the pose sections alone hold ~80 settings
    # the depth run config carries every DepthConfig setting but the device (the compute resource's)
    depth = classes["DepthRunConfig"]
    assert set(depth.engine_fields) == set(model_fields(DepthConfig)) - {"device"}
    assert set(classes["MaskRunConfig"].engine_fields) == set(model_fields(MaskConfig))


def test_one_export_default_for_the_command_line_and_the_asset():
    from assets_defs.export import ColmapExportConfig as Asset

    args = cli.build_parser().parse_args(["to-colmap", "root"])
    schema = _schema_defaults(Asset)
    for field in model_fields(ColmapExportConfig):
        assert _normalise(getattr(args, dest_of(ColmapExportConfig, field))) == schema[field]
    assert (schema["fmt"], schema["dense"]) == ("text", None)


def _defaults(parser, model):
    return {n: _normalise(parser.get_default(dest_of(model, n))) for n in model_fields(model)}


def _model_defaults(model, **preset):
    return {n: _normalise(preset[n] if n in preset else field_default(model.model_fields[n]))
            for n in model_fields(model) if not model.model_fields[n].is_required()}


def test_ego_render_settings_have_one_source_and_named_presets():
    """render-ego, the reference's script and the ego_render asset all start from EgoRenderConfig; where
    they differ it is a named preset, and only in that preset's settings."""
    from assets_defs._config import engine_values
    from assets_defs.egoexo import EgoRenderRunConfig
    from vipe_dagster.entry.render_vipe_pointcloud import build_parser as reference_parser

    ego = dict(cli.iter_parsers(cli.build_parser()))[("render-ego",)]
    generated = {s.field for s in ego.model_options if s.model is EgoRenderConfig}
    assert generated == set(model_fields(EgoRenderConfig))  # every setting is a flag
    args = ego.parse_args(["--input_dir", "a/cam01_x", "--out_dir", "o"])
    assert EgoRenderConfig(**model_values(args, EgoRenderConfig)) == EgoRenderConfig(input_dir="a/cam01_x",
                                                                                      out_dir="o")
    # the reference's flags: off unless given, as the reference renderer
    assert (args.fish_eye_rendering, args.use_mean_bg, args.only_bg) == (False, False, False)
    args = ego.parse_args(["--input_dir", "a", "--out_dir", "o", "--fish_eye_rendering", "--use_mean_bg",
                           "--background", "1", "0", "0", "--points_per_pixel", "4", "--cloud_cache", "off"])
    cfg = EgoRenderConfig(**model_values(args, EgoRenderConfig))
    assert (cfg.fish_eye_rendering, cfg.use_mean_bg, cfg.background, cfg.points_per_pixel, cfg.cloud_cache) == (
        True, True, (1.0, 0.0, 0.0), 4, "off")
    with pytest.raises(SystemExit):
        ego.parse_args(["--out_dir", "o"])  # --input_dir is required (the model has no default)

    # the reference's own script: render-ego's defaults but for REFERENCE_SCRIPT_PRESET (point_size 1.0)
    ref = _defaults(reference_parser(), EgoRenderConfig)
    want = _model_defaults(EgoRenderConfig, **REFERENCE_SCRIPT_PRESET)
    assert {k: v for k, v in ref.items() if k in want} == want and ref["point_size"] == 1.0

    # the Dagster asset: the model's defaults but for EGO_PRIOR_PRESET (fisheye, mean background)
    assert EgoRenderRunConfig.preset_defaults == EGO_PRIOR_PRESET
    values = engine_values(EgoRenderRunConfig())
    want = _model_defaults(EgoRenderConfig, **EGO_PRIOR_PRESET)
    assert {k: _normalise(v) for k, v in values.items()} == {k: want[k] for k in values}
    assert (values["fish_eye_rendering"], values["use_mean_bg"]) == (True, True)
    assert set(values) <= set(model_fields(EgoRenderConfig))

    # each preset sets existing settings to values other than the defaults, and is documented
    docs = (REPO / "docs" / "dagster.md").read_text() + (REPO / "README.md").read_text()
    for name, preset_values in render_config.PRESETS.items():
        for k, v in preset_values.items():
            assert v != field_default(EgoRenderConfig.model_fields[k]), (name, k)
    shown = ", ".join(f"{k}: {json.dumps(v)}" for k, v in EGO_PRIOR_PRESET.items())  # as docs/dagster.md shows it
    assert f"`EGO_PRIOR_PRESET` (`vipe_dagster/render/config.py`):\n`{shown}`" in docs, shown


def test_pose_run_config_carries_every_pose_setting_as_typed_sections():
    from assets_defs.pose import POSE_SECTIONS, PoseRunConfig, build_pipeline_config, build_pose_config
    from vipe_dagster.config import PRESETS, preset

    left_out = {"assume_fixed_camera_pose", "long_side"}  # the preset's / processed_video's (docstring)
    assert set(PoseRunConfig.engine_fields) == set(PoseConfig.model_fields) - left_out
    for name, section in POSE_SECTIONS.items():
        model = section.engine_model
        assert model is type(getattr(PoseConfig(), name))
        assert set(section.engine_fields) == set(model.model_fields) - ({"device"} if name == "ba" else set())
    assert "overrides" not in PoseRunConfig.model_fields  # typed sections replace the dotted strings
    # run-config defaults give the engine's PoseConfig (the device is the compute resource's)
    assert build_pose_config(PoseRunConfig(), "cpu") == PoseConfig()
    assert build_pose_config(PoseRunConfig(), "cuda").ba.device == "cuda"
    # the sections replace a preset's sections, so no preset may have sections other than the defaults
    for name in PRESETS:
        p = preset(name).pose
        for section in POSE_SECTIONS:
            assert getattr(p, section) == getattr(PoseConfig(), section), (name, section)
        assert build_pose_config(PoseRunConfig(preset=name), "cpu") == p
        # the camera presets' settings come with them: run-config defaults are the engine's
        pipe = build_pipeline_config(PoseRunConfig(preset=name), "cpu")
        assert pipe == preset(name).model_copy(update={"pose": p}), name


def test_no_help_text_says_default_none():
    seen = 0
    for words, parser in _parsers():
        text = parser.format_help()
        assert "(default: None)" not in text, f"{' '.join(words)} --help:\n{text}"
        assert "default: None" not in text, " ".join(words)
        seen += 1
    assert seen > 15


def test_help_of_every_subcommand_from_the_console():
    """``vipe-dagster <cmd> --help`` as a user runs it (one process per subcommand is slow: a few here, the
    in-process test above covers all)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for cmd in ("depth", "infer", "to-colmap", "render-ego"):
        out = subprocess.run([sys.executable, "-m", "vipe_dagster.cli", cmd, "--help"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "(default: None)" not in out.stdout and "--" in out.stdout


def test_existing_flag_names_still_parse():
    p = cli.build_parser()
    a = p.parse_args(["infer", "v.mp4", "--long_side", "256", "--assume_fixed_camera_pose", "--seed", "3", "-v",
                      "--metric_scale", "2.5"])
    assert (a.long_side, a.assume_fixed_camera_pose, a.seed, a.visualize, a.metric_scale) == (256, True, 3, True, 2.5)
    a = p.parse_args(["infer", "v.mp4", "--known_distance", "0", "9", "1.5"])
    assert a.known_distance == ["0", "9", "1.5"] and MetricScaleConfig(known_distance=a.known_distance).given
    a = p.parse_args(["depth", "r", "--mvs_long_side", "128", "--num-planes", "16", "--sweep_every", "2",
                      "--depth_range", "0.1", "5", "--device", "cpu"])
    assert (a.mvs_long_side, a.num_planes, a.sweep_every, a.depth_range) == (128, 16, 2, [0.1, 5.0])
    a = p.parse_args(["to-colmap", "r", "--format", "bin", "--dense", "--depth_step", "2", "--voxel-size", "0.05",
                      "--no_rectify_mei", "--no_manifest"])
    assert (a.fmt, a.dense, a.depth_step, a.voxel_size, a.rectify_mei) == ("bin", True, 2, 0.05, False)
    with pytest.raises(SystemExit):
        p.parse_args(["infer", "v.mp4", "--metric_scale", "1", "--camera_height", "1.5"])  # one metric cue


def test_bad_option_values_name_the_flag(tmp_path, capsys):
    from vipe_dagster.cli import main

    (tmp_path / "pose").mkdir()
    rc = main(["depth", str(tmp_path), "--window", "4"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "window must be odd, got 4" in err
    rc = main(["to-colmap", str(tmp_path), "--sequence", "x", "--jpeg_quality", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ")
    rc = main(["render-ego", "--input_dir", str(tmp_path), "--out_dir", str(tmp_path / "o"), "--point_size", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: invalid render-ego option --point_size: ") and "greater than 0" in err
    assert not (tmp_path / "o").exists()


def test_the_environment_is_read_when_the_definitions_are_built_not_at_import(tmp_path):
    """Import the code location, then change the environment: the definitions built afterwards use it."""
    code = f"""
import json, os
import vipe_dagster.definitions as d
import resources.artifacts, resources.compute, resources.models, resources.egoexo, resources.sources
os.environ.update(VIPE_ARTIFACT_ROOT={str(tmp_path / 'art')!r}, VIPE_DEVICE='cpu', VIPE_GPU_POOL_SIZE='3',
                  VIPE_MODEL_CACHE={str(tmp_path / 'models')!r}, VIPE_MODEL_OFFLINE='0',
                  VIPE_EGOEXO_ROOT={str(tmp_path / 'ego')!r}, VIPE_WATCH_DIR={str(tmp_path / 'in')!r},
                  VIPE_CATALOG_DB={str(tmp_path / 'c.duckdb')!r}, VIPE_EXECUTOR='in_process')
r = d.defs.resources
print(json.dumps(dict(root=r['artifacts'].root, device=r['compute'].device, pool=r['compute'].pool_limit(),
                      cache=r['model_hub'].cache_dir, offline=r['model_hub'].offline,
                      takes=r['egoexo'].takes_root, incoming=r['incoming'].folder, db=r['catalog_db'].db_path,
                      executor=d.defs.executor.name)))
os.environ['VIPE_ARTIFACT_ROOT'] = 'elsewhere'
print(json.dumps(d.build_definitions().resources['artifacts'].root))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPE_") or k == "VIPE_CLOUD_CACHE"}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    first, second = out.stdout.strip().splitlines()[-2:]
    got = json.loads(first)
    assert got == {"root": str(tmp_path / "art"), "device": "cpu", "pool": 3, "cache": str(tmp_path / "models"),
                   "offline": False, "takes": str(tmp_path / "ego"), "incoming": str(tmp_path / "in"),
                   "db": str(tmp_path / "c.duckdb"), "executor": "in_process"}
    assert json.loads(second) == "elsewhere"


def test_no_module_reads_the_environment_at_import():
    """Static guard: no module-level statement of the engine, the assets or the resources reads os.environ."""
    import ast

    class Finder(ast.NodeVisitor):
        def __init__(self):
            self.hits = []

        def visit_FunctionDef(self, node):  # bodies run when called, not at import
            for d in node.decorator_list + node.args.defaults + node.args.kw_defaults:
                if d is not None:
                    self.visit(d)

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Lambda(self, node):
            pass

        def visit_Call(self, node):
            text = ast.unparse(node.func)
            if text in ("os.environ.get", "os.getenv", "os.environ.__getitem__") or text.endswith("expanduser"):
                self.hits.append(node.lineno)
            self.generic_visit(node)

        def visit_Subscript(self, node):
            if ast.unparse(node.value) == "os.environ" and isinstance(node.ctx, ast.Load):
                self.hits.append(node.lineno)
            self.generic_visit(node)

    offenders = []
    for pkg in ("vipe_dagster", "assets_defs", "resources"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            f = Finder()
            f.visit(ast.parse(path.read_text()))
            offenders += [f"{path.relative_to(REPO)}:{line}" for line in f.hits]
    assert not offenders, offenders
