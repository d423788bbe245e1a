"""Command-line options generated from the engine's pydantic models (the one declaration of every setting).

A setting is declared once, as a field of a pydantic model (``vipe_dagster/config.py``,
``depth/config.py``, ``masks/config.py``, ``render/config.py``, ``export/colmap/options.py``): name, type,
default, bounds and description. :func:`add_model_arguments` turns the fields into ``argparse`` options and
:func:`model_values` reads them back; ``assets_defs/_config.py`` builds the Dagster run-config classes from
the same fields. Nothing here imports dagster.

Per-field command-line details live in the field's ``json_schema_extra["cli"]`` (all optional):

- ``flags``: the option strings, replacing the default ``--name`` / ``--name-with-dashes`` pair (keeps the
  flag names users already type, e.g. ``["--format"]`` for ``fmt`` or ``["-v", "--visualize"]``);
- ``aliases``: more option strings, added to the default pair;
- ``negative_flags``: more option strings that switch a boolean off (``["--no_rectify_mei"]``);
- ``dest``: the attribute on the parsed namespace (default: the field name);
- ``metavar``: argparse metavar (a tuple for fixed-length tuples).

Mapping: ``bool`` -> ``--x`` / ``--no-x`` (:class:`argparse.BooleanOptionalAction`); ``Literal`` ->
``choices``; ``int``/``float``/``str`` -> ``type``; ``tuple[...]`` of fixed length -> ``nargs=N``;
``list[T]`` -> ``nargs="+"``; ``X | None`` -> X with the default ``None`` (left out of the help text); a
field without a default -> a required option. The default of every option is the model's default; the help
text is the field's description plus its bounds.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class OptionSpec:
    """One generated option: which model field it sets and where argparse stores it."""

    model: type[BaseModel]
    field: str
    dest: str
    flags: tuple[str, ...]
    default: Any


def cli_meta(info: FieldInfo) -> dict[str, Any]:
    """The field's ``json_schema_extra["cli"]`` settings (empty when it has none)."""
    extra = info.json_schema_extra
    if isinstance(extra, Mapping):
        meta = extra.get("cli")
        if isinstance(meta, Mapping):
            return dict(meta)
    return {}


def field_default(info: FieldInfo) -> Any:
    """The model's default of a field (``default_factory`` called; tuples stay tuples)."""
    return info.get_default(call_default_factory=True)


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None`` / ``Optional[X]``, else ``(annotation, False)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def is_model(annotation: Any) -> bool:
    inner, _ = unwrap_optional(annotation)
    return isinstance(inner, type) and issubclass(inner, BaseModel)


def bounds_text(info: FieldInfo) -> str:
    """``>= 32``, ``> 0, <= 1``, ... from the field's annotated-types constraints ('' without any)."""
    parts = []
    for m in info.metadata:
        for cls, sym, attr in ((Ge, ">=", "ge"), (Gt, ">", "gt"), (Le, "<=", "le"), (Lt, "<", "lt")):
            if isinstance(m, cls):
                parts.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(parts)


def _default_flags(name: str) -> list[str]:
    flags = [f"--{name}"]
    if "_" in name:
        flags.append(f"--{name.replace('_', '-')}")
    return flags


def _negatives(flag: str) -> list[str]:
    if not flag.startswith("--"):
        return []
    word = flag[2:]
    return [f"--no_{word}"] if "_" in word else [f"--no-{word}"]


class BoolFlag(argparse.BooleanOptionalAction):
    """``--x`` / ``--no-x`` (``--x_y`` / ``--no_x_y`` and ``--x-y`` / ``--no-x-y`` for two-word names), plus
    extra negative spellings (``negative_flags``) kept for old command lines."""

    def __init__(self, option_strings, dest, negative_flags: Sequence[str] = (), **kwargs):
        positive = list(option_strings)
        super().__init__(positive, dest, **kwargs)
        negative = [n for f in positive for n in _negatives(f)]
        negative += [f for f in negative_flags if f not in negative]
        self.negative = set(negative)
        self.option_strings = positive + negative
        first = next((f for f in positive if f.startswith("--")), positive[0])
        self._usage = f"{first} | {negative[0]}" if negative else first

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.option_strings:
            setattr(namespace, self.dest, option_string not in self.negative)

    def format_usage(self) -> str:
        return self._usage


def _argument(name: str, info: FieldInfo, annotation: Any, default: Any) -> tuple[list[str], dict[str, Any]]:
    meta = cli_meta(info)
    flags = list(meta.get("flags") or _default_flags(name)) + list(meta.get("aliases") or [])
    kwargs: dict[str, Any] = {"dest": meta.get("dest", name), "default": default}
    help_text = (info.description or "").strip()
    bounds = bounds_text(info)
    if bounds:
        help_text = f"{help_text} [{bounds}]" if help_text else f"[{bounds}]"
    kwargs["help"] = help_text.replace("%", "%%")  # argparse %-formats help texts
    inner, optional = unwrap_optional(annotation)
    origin = typing.get_origin(inner)
    if inner is bool:
        if isinstance(default, bool):
            kwargs["help"] += f" (default: {'on' if default else 'off'})"
        kwargs["action"] = BoolFlag
        if meta.get("negative_flags"):
            kwargs["negative_flags"] = list(meta["negative_flags"])
        return flags, kwargs
    if origin is Literal:
        choices = list(typing.get_args(inner))
        kwargs["choices"] = choices
        kwargs["type"] = type(choices[0])
    elif origin is tuple:
        items = [a for a in typing.get_args(inner) if a is not Ellipsis]
        if Ellipsis in typing.get_args(inner):
            kwargs["nargs"] = "+"
        else:
            kwargs["nargs"] = len(items)
        # one argparse type for all items; mixed tuples are converted (and checked) by the model
        kwargs["type"] = items[0] if len(set(items)) == 1 and items[0] in (int, float, str) else str
        if "metavar" in meta:
            kwargs["metavar"] = tuple(meta["metavar"])
    elif origin is list:
        (item,) = typing.get_args(inner) or (str,)
        kwargs["nargs"] = "+"
        kwargs["type"] = item if item in (int, float, str) else str
    elif inner in (int, float, str):
        kwargs["type"] = inner
    else:
        raise TypeError(f"{name}: no command-line mapping for type {annotation!r}")
    if "metavar" in meta and "metavar" not in kwargs:
        kwargs["metavar"] = meta["metavar"]
    return flags, kwargs


def add_model_arguments(parser: argparse.ArgumentParser, model: type[BaseModel],
                        fields: Iterable[str] | None = None, exclude: Iterable[str] = (),
                        defaults: Mapping[str, Any] | None = None,
                        group: argparse._ArgumentGroup | None = None) -> list[OptionSpec]:
    """Add one option per field of ``model`` (``fields`` in that order, else every field except nested
    models) to ``parser`` (or to ``group``, one of its argument groups); return the specs.

    The specs are also recorded in ``parser.model_options`` (the consistency tests read them).
    ``defaults`` replaces the model's default for a front end that must differ (a documented exception,
    e.g. a reference command line)."""
    excluded = set(exclude)
    names = [n for n in (list(fields) if fields is not None else model_fields(model)) if n not in excluded]
    specs = []
    for name in names:
        info = model.model_fields[name]
        required = info.is_required() and name not in (defaults or {})
        default = None if required else (defaults or {}).get(name, field_default(info))
        if isinstance(default, list):
            default = list(default)
        flags, kwargs = _argument(name, info, info.annotation, default)
        if required:
            kwargs["required"] = True
        (group or parser).add_argument(*flags, **kwargs)
        specs.append(OptionSpec(model, name, kwargs["dest"], tuple(flags), default))
    parser.__dict__.setdefault("model_options", []).extend(specs)
    return specs


def model_fields(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` that map to one option (nested models left out)."""
    return [n for n, f in model.model_fields.items() if not is_model(f.annotation)]


def dest_of(model: type[BaseModel], field: str) -> str:
    return cli_meta(model.model_fields[field]).get("dest", field)


def model_values(args: argparse.Namespace, model: type[BaseModel], fields: Iterable[str] | None = None,
                 exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``{field: value}`` of the options generated from ``model`` (those present on ``args``), ready for
    ``model(**values)``."""
    excluded = set(exclude)
    out = {}
    for name in (list(fields) if fields is not None else model_fields(model)):
        dest = dest_of(model, name)
        if name in excluded or not hasattr(args, dest):
            continue
        v = getattr(args, dest)
        out[name] = list(v) if isinstance(v, tuple) else v
    return out


def build_model(model: type[BaseModel], values: Mapping[str, Any], what: str, cli: bool = True,
                **extra: Any) -> Any:
    """``model(**values, **extra)``; a validation failure becomes one ConfigError naming the setting (its
    command-line flag when ``cli``) and what was expected."""
    from pydantic import ValidationError

    from .errors import ConfigError

    try:
        return model(**values, **extra)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = [str(p) for p in e["loc"]]
            name = ".".join(loc)
            if cli and loc and loc[0] in model.model_fields:
                meta = cli_meta(model.model_fields[loc[0]])
                name = (list(meta.get("flags") or []) + [f"--{loc[0]}"])[0]
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {msg}, got {e['input']!r}" if name else msg)
        raise ConfigError(f"invalid {what} option {'; '.join(problems)}") from exc
