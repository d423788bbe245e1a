"""``python scripts/download_dataset.py --prefix PREFIX --output_base DIR [--rgb] [--depth]``.

ViPE's dataset downloader, with its flags: the prefix picks the dataset (``dpsp`` Dynpose-100K++, ``wsdg``
Wild-SDG-1M, ``w360`` Web360) and the shards; ``intrinsics`` and ``pose`` are always downloaded, ``--rgb``
and ``--depth`` add those attributes. Files land in ``<output_base>/<attribute>/``. The work is
``vipe-dagster download`` (checksummed, resumable, safe extraction, unhosted RGB fetched through
``yt-dlp`` or the Web360 archive); it prints a table of every shard and exits with 1 when any shard is
INCOMPLETE or MISSING. ``--source`` reads a mirror (folder, ``file://``, ``s3://``) instead of the Hub.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from ..cli import HelpFormatter
    from ..commands.download import add_download_options

    p = argparse.ArgumentParser(
        prog="download_dataset.py",
        description="Download a ViPE dataset (vipe-dagster)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--prefix", required=True, help="tar_name prefix of the shards: dpsp..., wsdg..., w360...")
    p.add_argument(
        "--output_base",
        "--output-base",
        dest="output",
        required=True,
        help="base directory to save the dataset",
    )
    p.add_argument("--source", default=None, help="mirror of the dataset repository (default: the Hub)")
    add_download_options(p, reference_defaults=True)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def run(args: argparse.Namespace) -> int:
    from ..commands.download import attributes_from_args, run_download

    return run_download(args, attributes_from_args(args, reference_defaults=True))


def main(argv: list[str] | None = None) -> int:
    from . import run_entry

    return run_entry(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
