"""Download released ViPE dataset shards (hf://, s3:// or local mirrors) and extract them safely.

Parity with ViPE's scripts/download_dataset.py: rows of meta.parquet are filtered by tar_name prefix (a full
shard name such as wsdg-003e2c86 selects one shard) and payload/<tar_name>/<attribute>.tar is extracted into
OUTPUT/<attribute>/; ``--prefix`` alone picks the dataset (dpsp, wsdg, w360) and ``--output_base``,
``--rgb``, ``--depth`` are the reference's spellings. Shards already extracted and verified are skipped;
sha256 digests are kept in OUTPUT/.vipe_download_state.json; unsafe tar members reject their shard.
RGB the repositories do not host is fetched from its original source: Dynpose-100K++ clips from YouTube
with yt-dlp (optional: ``pip install yt-dlp``), Web360 from its zip archive (``--rgb_archive``).
A table lists every shard; the exit code is 1 when any shard is INCOMPLETE, MISSING, FAILED or REJECTED.
"""

from __future__ import annotations

import json

NAME = "download"
HELP = "download and extract ViPE dataset shards (resumable, checksummed, safe extraction)"


def add_download_options(p, reference_defaults: bool) -> None:
    """Options shared by ``vipe-dagster download`` and ``scripts/download_dataset.py``."""
    for attr in ("rgb", "depth", "pose", "intrinsics"):
        default_note = "always downloaded" if reference_defaults and attr in ("pose", "intrinsics") else \
            "add this attribute"
        p.add_argument(f"--{attr}", action="store_true", help=f"download the {attr} tars ({default_note})")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit sha) for hf:// sources")
    p.add_argument("--verify", choices=["sha256", "size"], default="sha256",
                   help="how already-extracted shards are verified before being skipped")
    p.add_argument("--rgb_archive", "--rgb-archive", dest="rgb_archive", default=None,
                   help="Web360 RGB zip: URL or local path (default: the Google Drive archive ViPE uses)")
    p.add_argument("--ytdlp", default=None,
                   help="yt-dlp executable for Dynpose-100K++ RGB (default: yt-dlp on PATH)")
    p.add_argument("--cookies_from_browser", "--cookies-from-browser", dest="cookies_from_browser",
                   default=None,
                   help="pass --cookies-from-browser BROWSER to yt-dlp (YouTube may ask for a signed-in "
                        "session)")
    p.add_argument("--no_fetch_rgb", "--no-fetch-rgb", dest="no_fetch_rgb", action="store_true",
                   help="never fetch unhosted RGB (report it as MISSING)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")


def add_arguments(p):
    p.add_argument("--source", default=None,
                   help="dataset name (dynpose-100kpp | wild-sdg-1m | web360, or dpsp/wsdg/w360), "
                        "hf://datasets/..., s3://bucket/prefix, file:// URI or folder (default: the dataset "
                        "the --prefix names)")
    p.add_argument("--prefix", default="", help="tar_name prefix to select shards (default: all shards)")
    p.add_argument("--attributes", default=None,
                   help="comma-separated attributes: rgb, depth, pose, intrinsics (default: all four, or the "
                        "--rgb/--depth/--pose/--intrinsics flags)")
    p.add_argument("--output", "--output_base", "-o", dest="output", required=True,
                   help="output folder (files go to OUTPUT/<attribute>/)")
    add_download_options(p, reference_defaults=False)


def attributes_from_args(args, reference_defaults: bool) -> list[str]:
    flags = [a for a in ("rgb", "depth", "pose", "intrinsics") if getattr(args, a, False)]
    given = [a.strip() for a in (getattr(args, "attributes", None) or "").split(",") if a.strip()]
    if reference_defaults or (flags and not given):
        base = ["intrinsics", "pose"] if (reference_defaults or flags) else []
        return list(dict.fromkeys(base + given + flags))
    if not given and not flags:
        return ["rgb", "depth", "pose", "intrinsics"]
    return list(dict.fromkeys(given + flags))


def run_download(args, attributes: list[str]) -> int:
    from tqdm import tqdm

    from ..catalog.download import download
    from ..catalog.errors import SourceError
    from ..catalog.fetchers import default_rgb_fetcher
    from ..catalog.sources import dataset_spec, open_source
    from ..errors import ConfigError
    from ..io import fs

    if fs.is_remote(args.output):
        raise ConfigError(f"--output {args.output}: downloads are extracted into a local folder")
    source = args.source
    if source is None:
        head = (args.prefix or "").split("-", 1)[0]
        spec = dataset_spec(head) if head else None
        if spec is None:
            raise SourceError(f"--prefix {args.prefix!r}: cannot tell the dataset (expected a prefix "
                              f"starting with dpsp, wsdg or w360); give --source")
        source = spec.name
    fs.preflight_write(args.output, "output (--output)")
    src = open_source(source, revision=args.revision)
    fetcher = None
    if "rgb" in attributes and not args.no_fetch_rgb:
        fetcher = default_rgb_fetcher(args.prefix or (src.spec.prefix if src.spec else ""), args.rgb_archive,
                                      args.ytdlp, args.cookies_from_browser)
    bar = tqdm(desc="shards", unit="tar", disable=args.json)
    report = download(src, args.prefix, attributes, args.output, verify=args.verify,
                      progress=lambda r: bar.update(1), rgb_fetcher=fetcher)
    bar.close()
    summary = report.summary()
    if args.json:
        summary["complete"] = report.complete
        print(json.dumps(summary, indent=2))
    else:
        print(f"{report.source} @ {report.data_version} -> {report.output}")
        print(report.table())
        bad = [s for s in report.shards if not s.complete]
        if bad:
            print(f"{len(bad)} of {len(report.shards)} shard(s) not complete (INCOMPLETE / MISSING / "
                  f"FAILED / REJECTED above)")
    return 0 if report.ok and report.complete else 1


def run(args) -> int:
    return run_download(args, attributes_from_args(args, reference_defaults=False))
