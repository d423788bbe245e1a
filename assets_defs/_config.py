"""Dagster run-config classes built from the engine's pydantic models (one declaration of every setting).

``run_config_class("DepthRunConfig", DepthConfig, exclude=("device", "learned"))`` is a ``dg.Config`` whose
fields are the engine model's fields with the same names, types, defaults, bounds and descriptions, so the
launchpad shows exactly the engine's settings and a default is never written twice. The command line is
generated from the same models (``vipe_dagster.options``). Types Dagster's config system does not have are
mapped: a fixed-length ``tuple`` becomes a ``list`` (the engine model converts it back); nested models are
left out unless named in ``fields``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import dagster as dg
from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from vipe_dagster.options import field_default, is_model, model_fields, unwrap_optional


def _dagster_type(annotation: Any) -> Any:
    inner, optional = unwrap_optional(annotation)
    if typing.get_origin(inner) is tuple:
        items = [a for a in typing.get_args(inner) if a is not Ellipsis]
        item = items[0] if len(set(items)) == 1 else float  # mixed (int, int, float): numbers
        inner = list[item]
    return inner | None if optional else inner


def _dagster_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_field(info: FieldInfo, default: Any = ...) -> tuple[Any, FieldInfo]:
    """``(annotation, FieldInfo)`` of a ``dg.Config`` field mirroring an engine field (same default unless
    ``default`` is given, same description and bounds)."""
    value = field_default(info) if default is ... else default
    ann = _dagster_type(info.annotation)
    if info.metadata:
        ann = Annotated[ann, *info.metadata]
    return ann, Field(default=_dagster_default(value), description=info.description)


def run_config_class(name: str, model: type[BaseModel], fields: Iterable[str] | None = None,
                     exclude: Iterable[str] = (), also: Mapping[str, tuple[type[BaseModel], str]] | None = None,
                     extra: Mapping[str, tuple[Any, FieldInfo]] | None = None,
                     doc: str | None = None) -> type[dg.Config]:
    """A ``dg.Config`` subclass named ``name`` with the fields of ``model`` (``fields`` or every non-nested
    field, minus ``exclude``), then fields of other models (``also``: config name -> (model, field)), then
    the front-end-only fields in ``extra`` (settings no engine model has).

    The class records where each generated field comes from in ``field_sources`` (name -> (model, field));
    :func:`engine_values` returns the ``model`` ones."""
    excluded = set(exclude)
    names = [n for n in (list(fields) if fields is not None else model_fields(model)) if n not in excluded]
    defs: dict[str, Any] = {}
    for n in names:
        info = model.model_fields[n]
        if is_model(info.annotation):
            raise TypeError(f"{model.__name__}.{n} is a nested model; build its own config class")
        defs[n] = config_field(info)
    sources = {n: (model, n) for n in names}
    for n, (m, f) in (also or {}).items():
        defs[n] = config_field(m.model_fields[f])
        sources[n] = (m, f)
    defs.update(extra or {})
    cls = create_model(name, __base__=dg.Config, __module__=__name__, **defs)
    cls.__doc__ = doc or model.__doc__
    cls.engine_model = model  # type: ignore[attr-defined]
    cls.engine_fields = tuple(names)  # type: ignore[attr-defined]
    cls.field_sources = sources  # type: ignore[attr-defined]
    return cls


def engine_values(config: dg.Config) -> dict[str, Any]:
    """The engine-model settings of a config built by :func:`run_config_class` (front-end fields left out)."""
    return {n: getattr(config, n) for n in type(config).engine_fields}
