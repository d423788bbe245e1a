"""Names that come from data (tar names, sequence names, take and camera names, JSON keys) and become paths.

Every such name is checked against a whitelist before it is joined onto a folder, and joined paths are
checked to stay inside their root, so a crafted ``meta.parquet`` row, JSON key or CLI argument can never
read or write outside the folder it belongs to.

- ``SEQUENCE_NAME``: what an artifact sequence may be called. Liberal enough for real file stems
  (``My Clip (2)``, YouTube ids starting with ``-``) but never a path: no separators, no NUL or control
  characters, not ``.``/``..``, no leading dot (those are our temporary and lock files), at most 200 chars.
- ``TOKEN_NAME``: a strict ``[A-Za-z0-9][A-Za-z0-9._-]*`` token for tar shard names, take and camera names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError

TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_NAME = 200


class UnsafeNameError(InputError):
    """A name from data or the command line that would address a path outside its folder."""


def sequence_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be an artifact sequence name (None when it can)."""
    if not isinstance(name, str):
        return f"expected a string, got {type(name).__name__}"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    if name in (".", ".."):
        return "it is a relative path component"
    if name.startswith("."):
        return "it starts with '.' (reserved for temporary and lock files)"
    if _FORBIDDEN.search(name):
        return "it contains a path separator, NUL or control character"
    if name != name.strip():
        return "it has leading or trailing whitespace"
    return None


def check_sequence_name(name: object, where: str = "sequence name") -> str:
    problem = sequence_name_problem(name)
    if problem:
        raise UnsafeNameError(f"{where} {name!r} is not a valid sequence name: {problem}")
    assert isinstance(name, str)
    return name


def is_token(name: object) -> bool:
    return isinstance(name, str) and bool(TOKEN_NAME.match(name)) and ".." not in name


def check_token(name: object, where: str) -> str:
    """A strict name (tar shard, take, camera): ``[A-Za-z0-9][A-Za-z0-9._-]*`` without ``..``."""
    if not is_token(name):
        raise UnsafeNameError(f"{where} {name!r} is not a valid name: expected letters, digits, '.', '_' "
                              f"or '-' (starting with a letter or digit, no '..', at most {MAX_NAME} "
                              f"characters)")
    assert isinstance(name, str)
    return name


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when the local ``path`` resolves (symlinks followed) to ``root`` or below it."""
    r = Path(root).resolve()
    p = Path(path).resolve()
    return p == r or r in p.parents


def safe_local_join(root: str | os.PathLike, *parts: str, where: str = "path") -> Path:
    """``root/parts...`` for local paths, refusing any result that resolves outside ``root``."""
    for part in parts:
        if not part or part in (".", "..") or _FORBIDDEN.search(part) or os.path.isabs(part):
            raise UnsafeNameError(f"{where}: component {part!r} is not a plain file or folder name")
    p = Path(root).joinpath(*parts)
    if not inside(root, p):
        raise UnsafeNameError(f"{where}: {p} resolves to {p.resolve()}, outside {Path(root).resolve()}")
    return p
