"""Entry points of the reference-style scripts (``run.py``, ``scripts/*.py``, ``ego_view_rendering/*.py``).

The files at those paths are two-line wrappers around ``main()`` here, so they stay thin and run from a
fresh clone (the repository root is on ``sys.path`` when a script in it runs) as well as installed.
"""


def run_entry(build_parser, run, argv: list[str] | None = None) -> int:
    """Parse ``argv`` with ``build_parser()`` (which has ``--log-level``), set up logging, and run ``run(args)``
    with the CLI's error handling (one ``error:`` line, exit code 2)."""
    from ..cli import guarded
    from ..logsetup import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return guarded(run, args)
