"""Run benchmark suites (modules in vipe_dagster/eval/suites/), record machine info, wall time, frames/s and
peak memory per suite, write JSON and update the suites' blocks in a Markdown file (docs/benchmarks.md).
"""

from __future__ import annotations

NAME = "bench"
HELP = "run benchmark suites and record the numbers"


def add_arguments(p) -> None:
    p.add_argument("--suite", action="append", default=None, help="suite to run (repeatable; default: all)")
    p.add_argument("--quick", action="store_true", help="smaller problem sizes (smoke run)")
    p.add_argument("--json", default=None, help="write the full report as JSON here")
    p.add_argument("--markdown", default=None,
                   help="update this Markdown file (e.g. docs/benchmarks.md): each suite's block is replaced")
    p.add_argument("--timeout", type=float, default=None, help="kill a suite after this many seconds")
    p.add_argument("--list", action="store_true", help="list the available suites and exit")


def run(args) -> int:
    from ..eval.bench import discover_suites, run_bench

    if args.list:
        for name, meta in discover_suites().items():
            print(f"{name:<16} {meta['module']}  ({meta['title']})")
        return 0
    report = run_bench(suites=args.suite, quick=args.quick, json_out=args.json, markdown=args.markdown,
                       timeout_s=args.timeout)
    print(report["machine_description"])
    failed = 0
    for r in report["suites"]:
        status = "ok" if r["ok"] else f"FAILED ({r.get('error', '')[-400:]})"
        print(f"== {r['suite']}: {status}; wall {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
        for row in r["rows"]:
            fps = f"  [{row['frames_per_s']:.1f} frames/s]" if row.get("frames_per_s") else ""
            target = f"  (target {row['target']})" if row.get("target") else ""
            print(f"  {row['name']}: {row['value']:.4g} {row['unit']}{fps}{target}")
        failed += not r["ok"]
    if args.json:
        print(f"report written to {args.json}")
    if args.markdown:
        print(f"updated {args.markdown}")
    return 1 if failed else 0
