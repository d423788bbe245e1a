"""``vipe-dagster`` command line.

Subcommands live in ``vipe_dagster/commands/<name>.py``; each module defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Modules import their heavy dependencies inside
``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
from collections.abc import Iterator

from . import __version__
from .errors import VipeError
from .logsetup import configure_logging

log = logging.getLogger("vipe_dagster")


def _command_modules():
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


_STATES_DEFAULT = re.compile(r"%\(default\)|\(default\b|\bdefault[:=]", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after an option's help only when X tells the reader something.

    Left out: no default (``None``, empty string or list), on/off flags (``store_true`` / ``store_false``:
    the flag's help says what it switches, and ``--no-egoexo (default: True)`` reads backwards), and help
    texts that already state their default in words (``default: first frame``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or (isinstance(default, str | list | tuple | dict) and len(default) == 0)
                or _STATES_DEFAULT.search(text)):
            return text
        return super()._get_help_string(action)


def iter_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``parser`` and every (nested) subcommand parser, with the command words that reach it."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_parsers(sub, (*prefix, name))


def use_help_formatter(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` and all its subcommand parsers :class:`HelpFormatter` (nested ones do not inherit it)."""
    for _, p in iter_parsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vipe-dagster",
        description="Video -> camera intrinsics, poses, dense depth, COLMAP and ego-view renders.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vipe-dagster {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity (default: INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip(),
                           formatter_class=HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return use_help_formatter(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    return guarded(args._run, args)


def guarded(run, args: argparse.Namespace) -> int:
    """Run a command function; expected failures become one ``error:`` line and exit code 2 (130 on Ctrl-C).

    Shared by every console entry point (``vipe-dagster``, ``vipe``, ``run.py`` and the scripts)."""
    try:
        return int(run(args) or 0)
    except VipeError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except Exception as exc:
        # the environment, not a bug: unreadable/unwritable files and remote storage failures get one line
        from .io.fs import remote_error_message

        msg = remote_error_message(exc, _remote_location(args))
        if msg is None and isinstance(exc, OSError):
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            msg = f"{where}{exc.strerror or exc}"
        if msg is None:
            raise
        return _error(msg)


def _remote_location(args: argparse.Namespace) -> str:
    """The s3:// (or other remote) location among the command's arguments, for error messages."""
    for attr in ("output", "root", "artifact_dir", "input_dir", "out_dir", "video", "dir", "source",
                 "artifacts"):
        vals = getattr(args, attr, None)
        for v in vals if isinstance(vals, list) else [vals]:
            if isinstance(v, str) and "://" in v and not v.startswith("file://"):
                return v
    return "remote storage"


def _error(message: str, code: int = 2) -> int:
    """One ``error:`` line on stderr (a multi-line message is folded onto it) and exit code ``code``."""
    # a progress bar the failure interrupted would otherwise share the line with the error
    bar_cls = getattr(sys.modules.get("tqdm"), "tqdm", None)
    for bar in list(getattr(bar_cls, "_instances", None) or ()):
        bar.close()
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
