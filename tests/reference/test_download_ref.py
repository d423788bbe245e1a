"""``scripts/download_dataset.py`` and the RGB fetchers: reference flags, exit codes, yt-dlp / archive RGB.

Nothing here touches the internet: dataset repositories are local mirrors, ``yt-dlp`` is a local fake
program on PATH (so the real fetcher code runs), the archive is a local zip, and the unreachable server is a
closed port on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import sys
import zipfile
from pathlib import Path

import pytest
from ref_helpers import REPO, make_clip, run

sys.path.insert(0, str(REPO / "tests" / "catalog"))
from catalog_fakes import WSDG_SEQS, make_repo  # noqa: E402

from vipe_dagster.catalog.download import download  # noqa: E402
from vipe_dagster.catalog.fetchers import (  # noqa: E402
    FetchResult,
    FetchUnavailable,
    RgbFetcher,
    parse_clip,
)
from vipe_dagster.io import probe  # noqa: E402

SCRIPT = REPO / "scripts" / "download_dataset.py"
SEQS = ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174001"]

FAKE_YTDLP = r'''#!{python}
"""A stand-in for yt-dlp: 'downloads' $FAKE_YT_SOURCE to the -o path; URLs containing 'offline' fail like a
machine without network, 'removed' like a deleted video."""
import os, shutil, sys
args = sys.argv[1:]
out = args[args.index("-o") + 1]
url = args[-1]
with open(os.environ["FAKE_YT_LOG"], "a") as f:
    f.write(" ".join(args) + "\n")
if "offline" in url:
    sys.stderr.write("ERROR: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name "
                     "resolution> (caused by URLError)\n")
    sys.exit(1)
if "removed" in url:
    sys.stderr.write("ERROR: [youtube] abc: Video unavailable\n")
    sys.exit(1)
shutil.copy(os.environ["FAKE_YT_SOURCE"], out)
'''


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    base = tmp_path_factory.mktemp("mirrors")
    return {
        "wsdg": make_repo(
            base / "vipe-wild-sdg-1m",
            "wsdg",
            WSDG_SEQS,
            attributes=("rgb", "depth", "pose", "intrinsics"),
            rgb=True,
            drop={("wsdg-a2de74e8", "pose"): 1},
        ),
        "dpsp": make_repo(
            base / "vipe-dynpose-100kpp", "dpsp", {"dpsp-0000000a": [(s, 90) for s in SEQS]}, youtube=True
        ),
        "w360": make_repo(base / "vipe-web360", "w360", {"w360-a6680dd8": [("100001", 12), ("100002", 12)]}),
    }


@pytest.fixture(scope="module")
def fake_ytdlp(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    exe = d / "yt-dlp"
    exe.write_text(FAKE_YTDLP.replace("{python}", sys.executable))
    exe.chmod(0o755)
    source = make_clip(d / "youtube.mp4", frames=122, size=(160, 90))
    return d, source


def _table(out: str) -> dict[str, list[str]]:
    """The rows of the shard table, keyed by ``<tar_name>/<attribute>``."""
    rows = {}
    for ln in out.splitlines():
        parts = ln.split()
        if parts and "/" in parts[0] and parts[0].rsplit("/", 1)[1] in ("rgb", "depth", "pose", "intrinsics"):
            rows[parts[0]] = parts
    return rows


def test_reference_flags_complete_download_exits_0(repos, tmp_path):
    out = tmp_path / "ds"
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "wsdg-00000001",
            "--output_base",
            out,
            "--rgb",
            "--depth",
            "--source",
            repos["wsdg"].root,
        ],
        tmp_path,
    )
    assert p.rc == 0, p.out + p.err[-2000:]
    rows = _table(p.out)
    assert set(rows) == {f"wsdg-00000001/{a}" for a in ("intrinsics", "pose", "rgb", "depth")}
    assert all(r[1] == "extracted" and r[2] == "3/3" for r in rows.values())
    for attr, suffix in (("rgb", ".mp4"), ("depth", ".zip"), ("pose", ".npz")):
        assert len(list((out / attr).glob(f"*{suffix}"))) == 3
    # pose and intrinsics only without flags, as the reference
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "wsdg-00000001",
            "--output_base",
            tmp_path / "ds2",
            "--source",
            repos["wsdg"].root,
        ],
        tmp_path,
    )
    assert p.rc == 0 and set(_table(p.out)) == {"wsdg-00000001/intrinsics", "wsdg-00000001/pose"}


def test_incomplete_or_missing_shard_exits_1_with_the_table(repos, tmp_path):
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "wsdg-a2de74e8",
            "--output_base",
            tmp_path / "a",
            "--source",
            repos["wsdg"].root,
        ],
        tmp_path,
    )
    assert p.rc == 1, p.out
    rows = _table(p.out)
    assert (
        rows["wsdg-a2de74e8/pose"][1:3] == ["INCOMPLETE", "2/3"]
        and rows["wsdg-a2de74e8/intrinsics"][1] == "extracted"
    )
    assert "not complete" in p.out
    # vipe-dagster download with the reference's spellings: --output_base, --rgb (Web360 rgb not in the
    # mirror,
    # and the archive fetcher pointed at a missing file) -> MISSING, exit 1
    p = run(
        [
            "python",
            "-m",
            "vipe_dagster.cli",
            "download",
            "--prefix",
            "w360",
            "--output_base",
            tmp_path / "b",
            "--rgb",
            "--source",
            repos["w360"].root,
            "--rgb_archive",
            tmp_path / "absent.zip",
        ],
        tmp_path,
    )
    assert p.rc == 1 and _table(p.out)["w360-a6680dd8/rgb"][1] == "MISSING", p.out
    assert "absent.zip does not exist" in p.out


class ListFetcher(RgbFetcher):
    """A local fake fetcher: writes copies of one video; counts its calls."""

    name = "fake"
    source = "fake://videos"

    def __init__(self, video: Path, skip: set[str] = frozenset(), available: bool = True):
        self.video, self.skip, self.available, self.calls = video, set(skip), available, []

    def check(self) -> None:
        if not self.available:
            raise FetchUnavailable("fake tool is not installed")

    def fetch(self, requests, dest):
        self.calls.append([r.sequence for r in requests])
        res = FetchResult()
        for r in requests:
            if r.sequence in self.skip:
                res.problems[r.sequence] = "gone"
                continue
            out = dest / f"{r.sequence}.mp4"
            out.write_bytes(self.video.read_bytes())
            res.files[out.name] = {
                "sha256": __import__("hashlib").sha256(out.read_bytes()).hexdigest(),
                "bytes": out.stat().st_size,
            }
        return res


def test_fetcher_interface_fetches_records_and_resumes(repos, fake_ytdlp, tmp_path):
    _, video = fake_ytdlp
    f = ListFetcher(video, skip={SEQS[1]})
    rep = download(str(repos["dpsp"].root), "dpsp", "rgb,pose", tmp_path / "o", rgb_fetcher=f)
    rgb = next(s for s in rep.shards if s.attribute == "rgb")
    assert rgb.status == "fetched" and not rgb.complete and rgb.missing_sequences == [SEQS[1]]
    assert any("gone" in p for p in rgb.problems) and not rep.complete
    assert (tmp_path / "o" / "rgb" / f"{SEQS[0]}.mp4").is_file()
    f.skip.clear()
    rep = download(str(repos["dpsp"].root), "dpsp", "rgb,pose", tmp_path / "o", rgb_fetcher=f)
    assert f.calls[-1] == [SEQS[1]]  # only what was missing is fetched again
    assert rep.complete and next(s for s in rep.shards if s.attribute == "rgb").status == "fetched"
    rep = download(str(repos["dpsp"].root), "dpsp", "rgb,pose", tmp_path / "o", rgb_fetcher=f)
    assert len(f.calls) == 2 and next(s for s in rep.shards if s.attribute == "rgb").status == "skipped"
    # a fetched file that changed is fetched again
    (tmp_path / "o" / "rgb" / f"{SEQS[0]}.mp4").write_bytes(b"corrupt")
    download(str(repos["dpsp"].root), "dpsp", "rgb", tmp_path / "o", rgb_fetcher=f)
    assert f.calls[-1] == [SEQS[0]]
    # a fetcher that cannot run leaves the shard MISSING with its message
    rep = download(
        str(repos["dpsp"].root),
        "dpsp",
        "rgb",
        tmp_path / "p",
        rgb_fetcher=ListFetcher(video, available=False),
    )
    assert rep.shards[0].status == "missing" and "fake tool is not installed" in rep.shards[0].problems[-1]


def test_dynpose_rgb_through_ytdlp(repos, fake_ytdlp, tmp_path):
    bindir, source = fake_ytdlp
    log = tmp_path / "yt.log"
    out = tmp_path / "dp"
    extra = {
        "PATH": f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "FAKE_YT_SOURCE": str(source),
        "FAKE_YT_LOG": str(log),
    }
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "dpsp-0000000a",
            "--output_base",
            out,
            "--rgb",
            "--source",
            repos["dpsp"].root,
        ],
        tmp_path,
        **extra,
    )
    assert p.rc == 0, p.out + p.err[-3000:]
    assert _table(p.out)["dpsp-0000000a/rgb"][1:3] == ["fetched", "2/2"]
    assert len(log.read_text().splitlines()) == 1  # both clips come from one video: downloaded once
    assert "https://www.youtube.com/watch?v=123e4567-e8" in log.read_text()
    for s in SEQS:
        info = probe(str(out / "rgb" / f"{s}.mp4"))
        assert info.num_frames == 90 and info.width == 160  # [1 s, 4 s) at 29.97 fps
    state = json.loads((out / ".vipe_download_state.json").read_text())
    assert state["shards"]["dpsp-0000000a/rgb"]["fetched_from"] == "YouTube (yt-dlp)"
    # yt-dlp missing: MISSING, the message says how to install it, exit 1
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "dpsp",
            "--output_base",
            tmp_path / "n",
            "--rgb",
            "--source",
            repos["dpsp"].root,
        ],
        tmp_path,
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
    )
    assert p.rc == 1 and _table(p.out)["dpsp-0000000a/rgb"][1] == "MISSING"
    assert "pip install yt-dlp" in p.out


def test_ytdlp_without_network_or_with_a_removed_video(tmp_path, fake_ytdlp):
    bindir, source = fake_ytdlp
    repo = make_repo(
        tmp_path / "vipe-dynpose-100kpp", "dpsp", {"dpsp-0000000b": [("offline-clip", 90)]}, youtube=True
    )
    extra = {
        "PATH": f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "FAKE_YT_SOURCE": str(source),
        "FAKE_YT_LOG": str(tmp_path / "yt.log"),
    }
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "dpsp",
            "--output_base",
            tmp_path / "o",
            "--rgb",
            "--source",
            repo.root,
        ],
        tmp_path,
        **extra,
    )
    assert p.rc == 1 and _table(p.out)["dpsp-0000000b/rgb"][1] == "FAILED", p.out
    assert "cannot reach YouTube" in p.out and "no network?" in p.out
    repo = make_repo(
        tmp_path / "m2" / "vipe-dynpose-100kpp",
        "dpsp",
        {"dpsp-0000000c": [("removed-clip", 90)]},
        youtube=True,
    )
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "dpsp",
            "--output_base",
            tmp_path / "o2",
            "--rgb",
            "--source",
            repo.root,
        ],
        tmp_path,
        **extra,
    )
    assert p.rc == 1 and _table(p.out)["dpsp-0000000c/rgb"][1] == "INCOMPLETE", p.out
    assert "Video unavailable" in p.out


def test_web360_rgb_from_its_archive(repos, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=12, size=(96, 48))
    archive = tmp_path / "web360_raw.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(clip, "web360/100001.mp4")
        zf.write(clip, "web360/videos/100002.mp4")
        zf.write(clip, "../../escape.mp4")  # only base names are used: cannot write outside rgb/
        zf.writestr("readme.txt", "x")
    out = tmp_path / "w"
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "w360",
            "--output_base",
            out,
            "--rgb",
            "--source",
            repos["w360"].root,
            "--rgb_archive",
            archive,
        ],
        tmp_path,
    )
    assert p.rc == 0, p.out + p.err[-2000:]
    assert _table(p.out)["w360-a6680dd8/rgb"][1:3] == ["fetched", "2/2"]
    assert sorted(x.name for x in (out / "rgb").iterdir()) == ["100001.mp4", "100002.mp4"]
    assert not (tmp_path / "escape.mp4").exists() and not list(tmp_path.rglob("escape.mp4"))
    # an unreachable archive URL (closed port on loopback): FAILED with a clear message, exit 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run(
        [
            "python",
            SCRIPT,
            "--prefix",
            "w360",
            "--output_base",
            tmp_path / "w2",
            "--rgb",
            "--source",
            repos["w360"].root,
            "--rgb_archive",
            f"http://127.0.0.1:{port}/web360_raw.zip",
        ],
        tmp_path,
    )
    assert p.rc == 1 and _table(p.out)["w360-a6680dd8/rgb"][1] == "FAILED", p.out
    assert "cannot download the RGB archive" in p.out and "no network?" in p.out


def test_clip_timestamps():
    assert parse_clip("00:01:02.500-00:01:04.000") == (62.5, 64.0)
    with pytest.raises(ValueError):
        parse_clip("00:00:04.000-00:00:01.000")
    with pytest.raises(ValueError):
        parse_clip("1.0-2.0")
