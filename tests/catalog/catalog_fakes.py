"""Fake dataset repositories in the ViPE release layout, made of real (small) artifacts.

``make_repo`` writes ``meta.parquet`` + ``payload/<tar_name>/<attribute>.tar`` for a dataset prefix. The
artifacts are produced by ``vipe_dagster.io.ArtifactStore`` with known geometry so statistics can be checked
against closed-form values: camera moves ``STEP`` metres along x and turns ``TURN_DEG`` degrees about y per
frame; intrinsics are fx=fy=FX, cx=W/2, cy=H/2 on a WxH frame; depth is ``2 + 0.25 * row`` with column 0
invalid (0).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vipe_dagster.io import ArtifactStore

W, H, FX = 16, 8, 20.0
STEP, TURN_DEG = 0.1, 1.0


def trajectory(n: int) -> np.ndarray:
    c2w = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    for i in range(n):
        a = np.deg2rad(TURN_DEG * i)
        c2w[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[i, 0, 3] = STEP * i
    return c2w


def depth_frame() -> np.ndarray:
    d = (2.0 + 0.25 * np.arange(H, dtype=np.float32))[:, None].repeat(W, axis=1)
    d[:, 0] = 0.0
    return d


def write_sequence(store: ArtifactStore, seq: str, n: int, rgb: bool = False) -> None:
    store.write_pose(seq, trajectory(n))
    store.write_intrinsics(seq, np.tile([FX, FX, W / 2, H / 2], (n, 1)))
    store.write_depth(seq, (depth_frame() for _ in range(n)))
    if rgb:
        frames = (np.full((H, W, 3), 10 * i % 255, np.uint8) for i in range(n))
        store.write_rgb(seq, frames, fps=10)


def files_for(stage: Path, attr: str, seq: str) -> list[Path]:
    return {
        "rgb": [stage / "rgb" / f"{seq}.mp4"],
        "depth": [stage / "depth" / f"{seq}.zip"],
        "pose": [stage / "pose" / f"{seq}.npz"],
        "intrinsics": [stage / "intrinsics" / f"{seq}.npz", stage / "intrinsics" / f"{seq}_camera.txt"],
    }[attr]


@dataclass
class FakeRepo:
    root: Path
    meta: pl.DataFrame
    shards: dict[str, list[str]] = field(default_factory=dict)


def make_repo(root: Path, prefix: str, shards: dict[str, list[tuple[str, int]]], *,
              attributes=("depth", "pose", "intrinsics"), drop: dict[tuple[str, str], int] | None = None,
              youtube: bool = False, rgb: bool = False, evil: dict[tuple[str, str], str] | None = None,
              member_prefix: bool = False) -> FakeRepo:
    """shards: tar_name -> [(sequence, num_frames)]. drop[(tar, attr)] = number of sequences left out of the tar.
    evil[(tar, attr)] = 'dotdot' | 'symlink' | 'absolute' | 'hardlink' | 'device' adds a malicious member."""
    root.mkdir(parents=True, exist_ok=True)
    stage = root.parent / f".stage-{root.name}"
    store = ArtifactStore(str(stage))
    rows = []
    for tar, seqs in shards.items():
        for seq, n in seqs:
            write_sequence(store, seq, n, rgb=rgb)
            row = {"sequence": seq, "num_frames": n, "tar_name": tar}
            if youtube:
                row["youtube_link"] = f"https://www.youtube.com/watch?v={seq[:11]}"
                row["youtube_timestamp"] = "00:00:01.000-00:00:04.000"
            rows.append(row)
        for attr in attributes:
            keep = seqs[: len(seqs) - (drop or {}).get((tar, attr), 0)]
            tar_path = root / "payload" / tar / f"{attr}.tar"
            tar_path.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tar_path, "w") as tf:
                for seq, _ in keep:
                    for p in files_for(stage, attr, seq):
                        tf.add(p, arcname=(f"{attr}/{p.name}" if member_prefix else p.name))
                kind = (evil or {}).get((tar, attr))
                if kind:
                    add_evil_member(tf, kind)
    meta = pl.DataFrame(rows)
    if prefix == "w360":
        meta = meta.with_columns(pl.col("sequence").cast(pl.Int64))
    meta.write_parquet(root / "meta.parquet")
    shutil.rmtree(stage)
    return FakeRepo(root, meta, {t: [s for s, _ in v] for t, v in shards.items()})


def add_evil_member(tf: tarfile.TarFile, kind: str) -> None:
    payload = b"owned"
    if kind == "dotdot":
        ti = tarfile.TarInfo("../../escaped.txt")
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    elif kind == "absolute":
        ti = tarfile.TarInfo("/tmp/vipe_catalog_absolute_escape.txt")
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    elif kind == "symlink":
        ti = tarfile.TarInfo("link.npz")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(ti)
    elif kind == "hardlink":
        ti = tarfile.TarInfo("hard.npz")
        ti.type, ti.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(ti)
    elif kind == "device":
        ti = tarfile.TarInfo("dev.npz")
        ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
        tf.addfile(ti)
    else:
        raise ValueError(kind)


WSDG_SEQS = {
    "wsdg-00000001": [("0" * 31 + "1", 26), ("0" * 31 + "2", 30), ("0" * 31 + "3", 27)],
    "wsdg-a2de74e8": [("a" * 31 + "1", 28), ("a" * 31 + "2", 29), ("a" * 31 + "3", 26)],
    "wsdg-0000bad1": [("b" * 31 + "1", 26)],
    "wsdg-0000bad2": [("b" * 31 + "2", 26)],
}


@pytest.fixture(scope="session")
def wsdg_repo(tmp_path_factory) -> FakeRepo:
    """Wild-SDG-like repo: one good shard, one truncated pose tar (2 of 3), a '..' member and a symlink."""
    root = tmp_path_factory.mktemp("repos") / "vipe-wild-sdg-1m"
    return make_repo(root, "wsdg", WSDG_SEQS, drop={("wsdg-a2de74e8", "pose"): 1},
                     evil={("wsdg-0000bad1", "depth"): "dotdot", ("wsdg-0000bad2", "pose"): "symlink"})


@pytest.fixture(scope="session")
def small_repos(tmp_path_factory) -> dict[str, FakeRepo]:
    """Clean, complete fake repos of the three datasets (dpsp without hosted rgb)."""
    base = tmp_path_factory.mktemp("clean")
    return {
        "wild-sdg-1m": make_repo(base / "vipe-wild-sdg-1m", "wsdg",
                                 {"wsdg-00000001": WSDG_SEQS["wsdg-00000001"]}, member_prefix=True),
        "web360": make_repo(base / "vipe-web360", "w360", {"w360-a6680dd8": [("100001", 70), ("100002", 72)]}),
        "dynpose-100kpp": make_repo(
            base / "vipe-dynpose-100kpp", "dpsp",
            {"dpsp-0000000a": [("123e4567-e89b-12d3-a456-426614174000", 40)]}, youtube=True),
    }


# ---------------------------------------------------------------------- a fake Hugging Face Hub
class FakeHub:
    """Serves local folders as Hub dataset repos at fixed commit shas on 127.0.0.1 (the subset of the Hub
    HTTP API that ``HfApi.dataset_info`` and ``HfFileSystem`` use: revision info, tree, paths-info and
    ranged ``resolve`` downloads). Every request is recorded in ``requests``."""

    def __init__(self, repos: dict[str, tuple[Path, str]]):
        import http.server
        import threading

        self.repos = repos  # repo_id -> (folder, sha)
        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_POST(self):
                hub._handle(self, "POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _repo(self, repo_id: str, rev: str):
        from urllib.parse import unquote

        folder, sha = self.repos.get(repo_id, (None, None))
        if folder is None or unquote(rev) not in (sha, "main"):
            return None, None
        return folder, sha

    @staticmethod
    def _entry(folder: Path, p: Path) -> dict:
        rel = p.relative_to(folder).as_posix()
        if p.is_dir():
            return {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "path": rel}
        return {"type": "file", "oid": hashlib.sha1(p.read_bytes()).hexdigest(), "size": p.stat().st_size, "path": rel}

    def _send(self, h, code: int, body: bytes = b"", ctype: str = "application/json", extra: dict | None = None,
              method: str = "GET"):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _handle(self, h, method: str):
        import json
        import re
        from urllib.parse import parse_qs, unquote, urlparse

        u = urlparse(h.path)
        self.requests.append(f"{method} {u.path}")
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?$", u.path)
        if m:
            kind = m.group(2) or "revision"
            folder, sha = self._repo(m.group(1), m.group(3) or "main")
            if folder is None:
                return self._send(h, 404, b'{"error": "Repository or revision not found"}', method=method,
                                  extra={"X-Error-Code": "RevisionNotFound"})
            if kind == "revision":
                files = [{"rfilename": p.relative_to(folder).as_posix()} for p in sorted(folder.rglob("*")) if p.is_file()]
                body = {"id": m.group(1), "sha": sha, "private": False, "siblings": files, "tags": []}
                return self._send(h, 200, json.dumps(body).encode(), method=method)
            if kind == "tree":
                base = folder / unquote((m.group(4) or "").lstrip("/"))
                recursive = parse_qs(u.query).get("recursive", ["false"])[0].lower() == "true"
                if not base.exists():
                    return self._send(h, 404, b'{"error": "not found"}', method=method,
                                      extra={"X-Error-Code": "EntryNotFound"})
                items = sorted(base.rglob("*") if recursive else base.iterdir())
                return self._send(h, 200, json.dumps([self._entry(folder, p) for p in items]).encode(), method=method)
            n = int(h.headers.get("Content-Length") or 0)
            form = parse_qs(h.rfile.read(n).decode())
            out = [self._entry(folder, folder / p) for p in form.get("paths", []) if (folder / p).exists()]
            return self._send(h, 200, json.dumps(out).encode(), method=method)
        m = re.match(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", u.path)
        if m:
            folder, sha = self._repo(m.group(1), m.group(2))
            p = folder / unquote(m.group(3)) if folder else None
            if p is None or not p.is_file():
                return self._send(h, 404, b"", method=method, extra={"X-Error-Code": "EntryNotFound"})
            data = p.read_bytes()
            meta = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"', "Accept-Ranges": "bytes"}
            rng = h.headers.get("Range") or h.headers.get("range")
            if rng:
                a, _, b = rng.split("=", 1)[1].partition("-")
                start, end = int(a), (int(b) if b else len(data) - 1)
                end = min(end, len(data) - 1)
                meta["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(h, 206, data[start:end + 1], "application/octet-stream", meta, method)
            return self._send(h, 200, data, "application/octet-stream", meta, method)
        return self._send(h, 404, b'{"error": "unknown route"}', method=method)
