"""Dagster run-config classes built from the engine's pydantic models (one declaration of every setting).

``run_config_class("DepthRunConfig", DepthConfig, exclude=("device", "learned"))`` is a ``dg.Config`` whose
fields are the engine model's fields with the same names, types, defaults, bounds and descriptions, so the
launchpad shows exactly the engine's settings and a default is never written twice. The command line is
generated from the same models (``vipe_dagster.options``). Types Dagster's config system does not have are
mapped: a fixed-length ``tuple`` becomes a ``list`` (the engine model converts it back). Nested models become
nested config classes of their own (``sections``, built by :func:`section_config_class`), so a nested setting
is a typed field that Dagster's config validation checks (``ba: {window: 12}``), not a dotted string.
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
    if optional and typing.get_origin(inner) is typing.Literal:
        # Dagster resolves Literal[...] but not Literal[...] | None: a string, checked by the engine model
        inner = type(typing.get_args(inner)[0])
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
    description = info.description
    inner, optional = unwrap_optional(info.annotation)
    if optional and typing.get_origin(inner) is typing.Literal:
        description = f"{description} (one of {', '.join(map(str, typing.get_args(inner)))}, or null)"
    return ann, Field(default=_dagster_default(value), description=description)


def run_config_class(name: str, model: type[BaseModel], fields: Iterable[str] | None = None,
                     exclude: Iterable[str] = (), also: Mapping[str, tuple[type[BaseModel], str]] | None = None,
                     extra: Mapping[str, tuple[Any, FieldInfo]] | None = None,
                     doc: str | None = None, preset: Mapping[str, Any] | None = None,
                     sections: Mapping[str, type[dg.Config]] | None = None,
                     also_sections: Mapping[str, tuple[type[BaseModel], str, type[dg.Config]]] | None = None
                     ) -> type[dg.Config]:
    """A ``dg.Config`` subclass named ``name`` with the fields of ``model`` (``fields`` or every non-nested
    field, minus ``exclude``), then fields of other models (``also``: config name -> (model, field)), then
    the front-end-only fields in ``extra`` (settings no engine model has).

    ``preset``: a named preset of the engine (a module-level constant beside ``model``, e.g.
    ``vipe_dagster.render.config.EGO_PRIOR_PRESET``) whose values replace the model's defaults of those
    ``model`` fields; never a dict written here. The class records where each generated field comes from in
    ``field_sources`` (name -> (model, field)) and the preset in ``preset_defaults``; :func:`engine_values`
    returns the ``model`` ones. ``also_sections``: nested models of *other* engine models as typed nested config
    (config name -> (model, field, class built by :func:`section_config_class`)), e.g. a pipeline's camera
    settings beside a pose config; recorded in ``section_sources``, not returned by :func:`engine_values`
    (read them with ``engine_values(config.<name>)``).

    ``sections``: nested models of ``model`` as typed nested config (field name -> a class built by
    :func:`section_config_class`), e.g. ``ba: {window: 12}`` in the launchpad; recorded in
    ``section_sources`` and returned by :func:`engine_values` as nested dicts."""
    excluded = set(exclude)
    names = [n for n in (list(fields) if fields is not None else model_fields(model)) if n not in excluded]
    unknown = sorted(set(preset or {}) - set(names))
    if unknown:
        raise TypeError(f"{name}: preset values {unknown} are not fields of this config")
    defs: dict[str, Any] = {}
    for n in names:
        info = model.model_fields[n]
        if is_model(info.annotation):
            raise TypeError(f"{model.__name__}.{n} is a nested model; build its own config class")
        defs[n] = config_field(info, (preset or {}).get(n, ...))
    sources = {n: (model, n) for n in names}
    for n, (m, f) in (also or {}).items():
        defs[n] = config_field(m.model_fields[f])
        sources[n] = (m, f)
    for n, sec in (sections or {}).items():
        info = model.model_fields[n]
        if not is_model(info.annotation) or sec.engine_model is not unwrap_optional(info.annotation)[0]:
            raise TypeError(f"{name}.{n}: section {sec.__name__} is not built from {model.__name__}.{n}")
        defs[n] = (sec, Field(default_factory=sec, description=info.description or sec.__doc__))
    for n, (m, f, sec) in (also_sections or {}).items():
        if sec.engine_model is not unwrap_optional(m.model_fields[f].annotation)[0]:
            raise TypeError(f"{name}.{n}: section {sec.__name__} is not built from {m.__name__}.{f}")
        defs[n] = (sec, Field(default_factory=sec, description=m.model_fields[f].description or sec.__doc__))
    defs.update(extra or {})
    cls = create_model(name, __base__=dg.Config, __module__=__name__, **defs)
    cls.__doc__ = doc or model.__doc__
    cls.engine_model = model  # type: ignore[attr-defined]
    cls.engine_fields = tuple(names) + tuple(sections or ())  # type: ignore[attr-defined]
    cls.section_sources = {**{n: (model, n) for n in (sections or {})},  # type: ignore[attr-defined]
                           **{n: (m, f) for n, (m, f, _) in (also_sections or {}).items()}}
    cls.field_sources = sources  # type: ignore[attr-defined]
    cls.preset_defaults = dict(preset or {})  # type: ignore[attr-defined]
    return cls


def section_config_class(name: str, model: type[BaseModel], exclude: Iterable[str] = ()) -> type[dg.Config]:
    """The ``dg.Config`` of one nested engine model (e.g. ``PoseConfig.ba`` -> ``BAConfig``): every field
    of ``model`` but ``exclude`` (settings a resource supplies, such as the device)."""
    return run_config_class(name, model, exclude=exclude, doc=model.__doc__)


def engine_values(config: dg.Config) -> dict[str, Any]:
    """The engine-model settings of a config built by :func:`run_config_class` (front-end fields left out;
    sections as nested dicts of their engine settings)."""
    cls = type(config)
    sections = getattr(cls, "section_sources", {})
    return {n: (engine_values(getattr(config, n)) if n in sections else getattr(config, n))
            for n in cls.engine_fields}
