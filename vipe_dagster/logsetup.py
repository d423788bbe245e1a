"""Console logging for the command lines: our loggers at the chosen level, everything else at WARNING.

One ``stderr`` handler on the root logger prints a record when it comes from one of our packages
(:data:`OUR_LOGGERS`) at the chosen level or above, or from any other package (great_expectations, urllib3,
botocore, numexpr, alembic, dagster's Python loggers, ...) at WARNING or above. The filter sits on the handler,
not only on logger levels, because some libraries set their own loggers to INFO when imported
(great_expectations does).

Records that a Dagster step already forwards to its run log (``assets_defs._common.engine_logs_to_dagster``)
carry :data:`FORWARDED` and are not printed again here: the run's console logger prints them once.
"""

from __future__ import annotations

import logging
import sys

OUR_LOGGERS = ("vipe_dagster", "vipe", "assets_defs", "resources", "gpu_kernels")
"""Logger namespaces of this project; every other logger counts as third-party."""
THIRD_PARTY_LEVEL = logging.WARNING
FORMAT = "%(levelname)s %(name)s: %(message)s"
FORWARDED = "vipe_forwarded_to_dagster"
"""Attribute set on a log record that a Dagster step forwarded to its own log."""


def is_ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUR_LOGGERS)


class ConsoleFilter(logging.Filter):
    """Pass our records at ``level`` and up, third-party ones at ``third_party_level`` and up, each once."""

    def __init__(self, level: int, third_party_level: int = THIRD_PARTY_LEVEL):
        super().__init__()
        self.level = level
        self.third_party_level = max(third_party_level, level)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, FORWARDED, False):
            return False
        return record.levelno >= (self.level if is_ours(record.name) else self.third_party_level)


class _ConsoleHandler(logging.StreamHandler):
    """Writes to ``stream`` or, without one, to whatever ``sys.stderr`` is when a record is printed (a test's
    capture, a redirected stream). Its class marks it, so configuring twice replaces it instead of adding one."""

    def __init__(self, stream=None):
        super().__init__(stream if stream is not None else sys.stderr)
        self._fixed = stream is not None

    @property
    def stream(self):
        return self._stream if self._fixed else sys.stderr

    @stream.setter
    def stream(self, value):
        self._stream = value

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)
        if tqdm is None or not getattr(tqdm, "_instances", None):
            return super().emit(record)
        try:  # a progress bar is on screen: print the line above it instead of in the middle of it
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def configure_logging(level: int | str = "INFO", stream=None) -> logging.Handler:
    """Set up console logging for a command line run; returns the handler (replaced on a second call)."""
    lvl = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _ConsoleHandler)]:
        root.removeHandler(h)
    handler = _ConsoleHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(ConsoleFilter(lvl))
    root.addHandler(handler)
    # loggers without a level of their own (most third-party ones) inherit the root's: records below it are
    # never even created; ours get the chosen level explicitly
    root.setLevel(max(lvl, THIRD_PARTY_LEVEL))
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(lvl)
    return handler
