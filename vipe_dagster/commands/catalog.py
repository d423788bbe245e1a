"""Build the DuckDB annotation catalog of released ViPE datasets (hf://, s3:// or local mirrors) and local
ViPE-format folders, or query it with SQL. The build writes a temporary file and renames it into place after
the SQL data tests passed, so readers never see a partial catalog; queries run on a read-only connection with
file access disabled. See docs/catalog.md for the tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = "catalog"
HELP = "build the DuckDB annotation catalog, or query it with SQL (read-only)"


def _db(p):
    p.add_argument("--db", default=None,
                   help="catalog file (default: $VIPE_CATALOG_DB or data/catalog.duckdb)")


def add_arguments(p):
    sub = p.add_subparsers(dest="catalog_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="(re)build the catalog atomically")
    b.add_argument("--source", action="append", default=[],
                   help="dataset name, hf://datasets/..., s3:// or local mirror; repeat for several")
    b.add_argument("--artifacts", action="append", default=[],
                   help="ViPE-format artifact folder (downloads or our outputs); repeat for several")
    _db(b)
    b.add_argument("--no-payload-listing", "--no_payload_listing", dest="list_payload", action="store_false",
                   help="do not list payload/ tars on the sources (faster on the Hub)")
    b.add_argument("--depth-frames", "--depth_frames", dest="depth_frames", type=int, default=8,
                   help="depth frames sampled per video for depth statistics")
    b.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another build's lock")
    q = sub.add_parser("query", help="run SQL on a read-only connection")
    q.add_argument("sql", help="SQL text, or @FILE to read it from a file")
    q.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="output format (csv writes list/struct columns as JSON text)")
    q.add_argument("--timeout", type=float, default=60.0,
                   help="cancel the statement after this many seconds (0: no limit)")
    q.add_argument("--memory-limit", "--memory_limit", dest="memory_limit", default="2GB",
                   help="DuckDB memory limit of the query (e.g. 512MB, 4GB)")
    q.add_argument("--output", "-o", default=None, help="write the result here (required for parquet to a tty)")
    _db(q)
    t = sub.add_parser("tables", help="list the catalog's tables and their row counts")
    _db(t)


def run(args) -> int:
    from ..catalog.build import build_catalog, query

    if args.catalog_command == "build":
        from ..io import fs

        if not args.source and not args.artifacts:
            from ..catalog.errors import CatalogError

            raise CatalogError("nothing to catalog: give at least one --source or --artifacts")
        if args.depth_frames < 1:
            from ..errors import ConfigError

            raise ConfigError(f"--depth-frames must be >= 1, got {args.depth_frames}")
        # reachability and permissions first: a bad credential must not surface after the whole scan
        for root in args.artifacts:
            fs.preflight_read(root, "--artifacts")
        for src in args.source:
            if "://" in src and not src.startswith(("hf://", "file://")):
                fs.preflight_read(src, "--source")
        from ..catalog.build import default_db_path

        db = args.db or default_db_path()
        if fs.is_remote(db):
            from ..errors import ConfigError

            raise ConfigError(f"--db {db}: the catalog is a local DuckDB file")
        fs.preflight_write(str(Path(db).expanduser().absolute().parent), "--db folder")
        res = build_catalog(args.source, args.artifacts, args.db, list_payload=args.list_payload,
                            depth_frames=args.depth_frames, lock_timeout=args.wait)
        print(json.dumps(res.summary(), indent=2))
        return 0
    if args.catalog_command == "tables":
        sql = ("SELECT table_name, estimated_size AS rows, column_count FROM duckdb_tables() "
               "ORDER BY table_name")
        print(query(args.db, sql, "table"))
        return 0
    sql = args.sql
    if sql.startswith("@"):
        from ..io.fs import preflight_read

        preflight_read(sql[1:], "SQL file")
        with open(sql[1:], encoding="utf-8") as f:
            sql = f.read()
    if args.format == "parquet" and args.output is None:
        if sys.stdout.isatty():
            from ..catalog.errors import QueryError

            raise QueryError("--format parquet writes binary data: give --output FILE or redirect stdout")
        data = query(args.db, sql, "parquet", timeout_s=args.timeout, memory_limit=args.memory_limit)
        assert isinstance(data, bytes)
        sys.stdout.buffer.write(data)
        return 0
    out = query(args.db, sql, args.format, output=args.output, timeout_s=args.timeout,
                memory_limit=args.memory_limit)
    if out is not None:
        print(out if isinstance(out, str) else out.decode("utf-8"), end="" if args.format == "csv" else "\n")
    return 0
