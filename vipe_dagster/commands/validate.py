"""Check a ViPE-format result folder the way ViPE's CI smoke validator does (files, counts, shapes, finiteness)."""

from __future__ import annotations

NAME = "validate"
HELP = "validate the artifacts of one or all sequences in a ViPE-format folder"


def add_arguments(p):
    p.add_argument("root", help="artifact root (folder or s3:// prefix)")
    p.add_argument("--sequence", default=None, help="sequence name (default: every sequence found)")
    p.add_argument("--frames", type=int, default=None, help="expected number of frames")
    p.add_argument("--require", default="rgb,pose,intrinsics,depth,mask,info",
                   help="comma-separated attributes that must be present")


def run(args) -> int:
    from ..errors import ArtifactError, ConfigError
    from ..io import ArtifactStore, fs
    from ..io.validate import ALL_ATTRIBUTES, validate_sequence

    fs.preflight_read(args.root, "artifact root")
    store = ArtifactStore(args.root)
    names = [args.sequence] if args.sequence else store.sequences()
    if not names:
        raise ArtifactError(f"no sequences found under {args.root}")
    require = tuple(a.strip() for a in args.require.split(",") if a.strip())
    unknown = [a for a in require if a not in ALL_ATTRIBUTES]
    if unknown:
        raise ConfigError(f"--require: unknown attribute(s) {unknown}; "
                          f"choose from {', '.join(ALL_ATTRIBUTES)}")
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    failed = 0
    for name in names:
        for f in validate_sequence(store, name, args.frames, require):
            failed += not f.ok
            print(f"{'PASS' if f.ok else 'FAIL'} {name} {f.check}: {f.detail}")
    return 1 if failed else 0
