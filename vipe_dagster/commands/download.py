"""Download released ViPE dataset shards (hf://, s3:// or local mirrors) and extract them safely.

Parity with ViPE's scripts/download_dataset.py: rows of meta.parquet are filtered by tar_name prefix (a full
shard name such as wsdg-003e2c86 selects one shard) and payload/<tar_name>/<attribute>.tar is extracted into
OUTPUT/<attribute>/. Shards already extracted and verified are skipped; sha256 digests are kept in
OUTPUT/.vipe_download_state.json; unsafe tar members reject their shard; incomplete shards are reported.
"""

from __future__ import annotations

import json

NAME = "download"
HELP = "download and extract ViPE dataset shards (resumable, checksummed, safe extraction)"


def add_arguments(p):
    p.add_argument("--source", required=True,
                   help="dataset name (dynpose-100kpp | wild-sdg-1m | web360, or dpsp/wsdg/w360), hf://datasets/..., "
                        "s3://bucket/prefix, file:// URI or folder")
    p.add_argument("--prefix", default="", help="tar_name prefix to select shards (default: all shards)")
    p.add_argument("--attributes", default="rgb,depth,pose,intrinsics",
                   help="comma-separated attributes: rgb, depth, pose, intrinsics")
    p.add_argument("--output", "-o", required=True, help="output folder (files go to OUTPUT/<attribute>/)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit sha) for hf:// sources")
    p.add_argument("--verify", choices=["sha256", "size"], default="sha256",
                   help="how already-extracted shards are verified before being skipped")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")


def run(args) -> int:
    from tqdm import tqdm

    from ..catalog.download import download
    from ..catalog.sources import open_source
    from ..errors import ConfigError
    from ..io import fs

    if fs.is_remote(args.output):
        raise ConfigError(f"--output {args.output}: downloads are extracted into a local folder")
    fs.preflight_write(args.output, "output (--output)")
    src = open_source(args.source, revision=args.revision)
    bar = tqdm(desc="shards", unit="tar", disable=args.json)
    report = download(src, args.prefix, args.attributes, args.output, verify=args.verify,
                      progress=lambda r: bar.update(1))
    bar.close()
    summary = report.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{report.source} @ {report.data_version} -> {report.output}")
        print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(summary["counts"].items())))
        for s in report.shards:
            if s.problems:
                flag = "INCOMPLETE" if s.status in ("extracted", "skipped") else s.status.upper()
                print(f"  {flag} {s.tar_name}/{s.attribute}.tar: {'; '.join(s.problems)}")
    return 0 if report.ok else 1
