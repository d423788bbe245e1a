"""RGB videos the released datasets do not host, fetched from where ViPE's downloader gets them.

One small interface, :class:`RgbFetcher`: ``check()`` says (cheaply, before anything is downloaded) whether
the fetcher can run at all, ``fetch(requests, dest)`` writes ``dest/<sequence>.mp4`` for every request it
can, atomically, and reports the rest. Two implementations:

- :class:`YtDlpFetcher` (Dynpose-100K++): each source video is downloaded once with the ``yt-dlp`` program
  (an optional tool: ``pip install yt-dlp``), then every clip of it is cut at its ``youtube_timestamp``
  (``HH:MM:SS.fff-HH:MM:SS.fff``) by decoding with PyAV and encoding H.264 (no ffmpeg program needed);
- :class:`ArchiveFetcher` (Web360): one zip archive (by default the Google Drive file ViPE's downloader
  uses; any ``http(s)://``/``file://`` URL or local path can be given) whose ``*.mp4`` members named after
  the sequences are copied out (only the member's base name is used, so no member can write elsewhere).

A missing tool or network raises :class:`FetchUnavailable` with what to do; a single clip that cannot be
fetched (a removed video, a short archive) is a problem of that sequence only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DownloadError

log = logging.getLogger(__name__)

WEB360_RGB_URL = (
    "https://drive.usercontent.google.com/download?id=1W1eLmaP16GZOeisAR1q-y9JYP9gT1CRs"
    "&export=download&confirm=t"
)
"""The Web360 RGB archive ViPE's downloader fetches (Google Drive file 1W1eLmaP16GZOeisAR1q-y9JYP9gT1CRs)."""
YTDLP_FORMAT = "wv*[height>=720][ext=mp4]/w[height>=720][ext=mp4]/bv[ext=mp4]/b[ext=mp4]"
_NETWORK_HINTS = (
    "name or service not known",
    "temporary failure in name resolution",
    "network is unreachable",
    "connection refused",
    "timed out",
    "no address associated",
    "failed to resolve",
    "nodename nor servname",
    "getaddrinfo",
    "connection reset",
    "unable to download webpage",
)
_TIMESTAMP = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


class FetchUnavailable(DownloadError):
    """The fetcher cannot run here: its tool is not installed or the network is unreachable."""


@dataclass(frozen=True)
class RgbRequest:
    sequence: str
    num_frames: int
    youtube_link: str | None = None
    youtube_timestamp: str | None = None


@dataclass
class FetchResult:
    files: dict[str, dict] = field(default_factory=dict)  # "<seq>.mp4" -> {"sha256", "bytes", "frames"?}
    problems: dict[str, str] = field(default_factory=dict)  # sequence -> why it is missing


class RgbFetcher(ABC):
    """Fetches the RGB videos of a dataset that its repository does not host."""

    name: str = "rgb"
    source: str = ""  # where the videos come from, for reports

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`FetchUnavailable` when the fetcher cannot run at all (before any download)."""

    @abstractmethod
    def fetch(self, requests: list[RgbRequest], dest: Path) -> FetchResult:
        """Write ``dest/<sequence>.mp4`` for every request it can (atomically); report the others."""


def _is_network_error(text: str) -> bool:
    low = text.lower()
    return any(h in low for h in _NETWORK_HINTS)


def _digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def parse_timestamp(text: str) -> float:
    """``HH:MM:SS.fff`` -> seconds."""
    m = _TIMESTAMP.match(text or "")
    if not m:
        raise ValueError(f"expected HH:MM:SS.fff, got {text!r}")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def parse_clip(text: str | None) -> tuple[float, float]:
    """``youtube_timestamp`` ``HH:MM:SS.fff-HH:MM:SS.fff`` -> (start, end) seconds."""
    parts = (text or "").split("-")
    if len(parts) != 2:
        raise ValueError(f"expected HH:MM:SS.fff-HH:MM:SS.fff, got {text!r}")
    start, end = parse_timestamp(parts[0]), parse_timestamp(parts[1])
    if end <= start:
        raise ValueError(f"clip {text!r} ends before it starts")
    return start, end


def cut_clip(video: Path, start: float, end: float, out: Path) -> int:
    """Frames of ``video`` with presentation time in ``[start, end)`` as H.264 ``out`` (atomic); returns the
    number of frames written."""
    import av

    from ..io.video import VideoWriter

    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        fps = float(vs.average_rate or vs.guessed_rate or 30)
        tb = float(vs.time_base) if vs.time_base else 1.0 / fps
        if start > 0:
            c.seek(int(max(0.0, start - 1.0) / tb), stream=vs, backward=True, any_frame=False)
        eps = 0.25 / fps
        with VideoWriter(str(out), fps=fps) as w:
            for frame in c.decode(vs):
                t = float(frame.pts * tb) if frame.pts is not None else None
                if t is None or t < start - eps:
                    continue
                if t >= end - eps:
                    break
                img = frame.to_ndarray(format="rgb24")
                h, wd = img.shape[:2]
                w.add(img[: h - h % 2, : wd - wd % 2])
            count = w.count
    return count


class YtDlpFetcher(RgbFetcher):
    """Dynpose-100K++: clips of YouTube videos via the ``yt-dlp`` program (see the module docstring)."""

    name = "yt-dlp"
    source = "YouTube (yt-dlp)"

    def __init__(
        self, executable: str | None = None, cookies_from_browser: str | None = None, timeout: float = 3600.0
    ):
        self.executable = executable or os.environ.get("VIPE_YTDLP") or "yt-dlp"
        self.cookies_from_browser = cookies_from_browser
        self.timeout = timeout

    def _exe(self) -> str | None:
        return shutil.which(self.executable)

    def check(self) -> None:
        if self._exe() is None:
            raise FetchUnavailable(
                f"Dynpose-100K++ RGB is not hosted with the dataset; it is cut from the YouTube videos "
                f"named in meta.parquet with the yt-dlp program, which is not installed ({self.executable!r} "
                f"is not on PATH): install it with `pip install yt-dlp` (or set VIPE_YTDLP to its path) and "
                f"run again"
            )

    def fetch(self, requests: list[RgbRequest], dest: Path) -> FetchResult:
        self.check()
        exe = self._exe()
        assert exe is not None
        res = FetchResult()
        by_link: dict[str, list[RgbRequest]] = {}
        for r in requests:
            if not r.youtube_link:
                res.problems[r.sequence] = "no youtube_link in meta.parquet"
                continue
            by_link.setdefault(r.youtube_link, []).append(r)
        dest.mkdir(parents=True, exist_ok=True)
        for link, reqs in by_link.items():
            clips = {}
            for r in reqs:
                try:
                    clips[r.sequence] = parse_clip(r.youtube_timestamp)
                except ValueError as exc:
                    res.problems[r.sequence] = f"youtube_timestamp: {exc}"
            if not clips:
                continue
            with tempfile.TemporaryDirectory(prefix=".tmp-vipe-ytdlp-", dir=dest) as tmp:
                video = Path(tmp) / "video.mp4"
                cmd = [exe, "--quiet", "--no-warnings", "--no-playlist", "-f", YTDLP_FORMAT, "-o", str(video)]
                if self.cookies_from_browser:
                    cmd += ["--cookies-from-browser", self.cookies_from_browser]
                cmd.append(link)
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    for s in clips:
                        res.problems[s] = f"yt-dlp timed out after {self.timeout:.0f} s on {link}"
                    continue
                err = (p.stderr or p.stdout or "").strip()
                if p.returncode != 0 or not video.is_file():
                    if _is_network_error(err):
                        raise FetchUnavailable(
                            f"cannot reach YouTube to fetch Dynpose-100K++ RGB (no network?): "
                            f"yt-dlp on {link}: {err.splitlines()[-1] if err else 'failed'}"
                        )
                    last = err.splitlines()[-1] if err else f"exit code {p.returncode}, no video written"
                    for s in clips:
                        res.problems[s] = f"yt-dlp could not download {link}: {last}"
                    continue
                for r in reqs:
                    if r.sequence not in clips:
                        continue
                    start, end = clips[r.sequence]
                    out = dest / f"{r.sequence}.mp4"
                    try:
                        n = cut_clip(video, start, end, out)
                    except Exception as exc:  # a broken download: this clip only
                        res.problems[r.sequence] = f"cutting {link} [{start:.3f}, {end:.3f}) s failed: {exc}"
                        continue
                    if abs(n - r.num_frames) > 1:  # the release's own counts are off by one (ViPE issue #49)
                        out.unlink()
                        res.problems[r.sequence] = (
                            f"the clip has {n} frames but meta.parquet says {r.num_frames} "
                            f"(the YouTube video may have changed); not kept"
                        )
                        continue
                    res.files[out.name] = {**_digest(out), "frames": n}
        return res


class ArchiveFetcher(RgbFetcher):
    """Web360: one zip archive of ``<sequence>.mp4`` files (see the module docstring)."""

    name = "archive"

    def __init__(self, url: str = WEB360_RGB_URL, timeout: float = 60.0):
        self.url = url
        self.source = url
        self.timeout = timeout

    def check(self) -> None:
        if "://" not in self.url or self.url.startswith("file://"):
            path = self.url[len("file://") :] if self.url.startswith("file://") else self.url
            if not Path(path).is_file():
                raise FetchUnavailable(f"RGB archive {self.url} does not exist")

    @contextlib.contextmanager
    def _local_archive(self, tmp: Path):
        if "://" not in self.url or self.url.startswith("file://"):
            yield Path(self.url[len("file://") :] if self.url.startswith("file://") else self.url)
            return
        import urllib.error
        import urllib.request

        target = tmp / "archive.zip"
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as r, open(target, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except urllib.error.HTTPError as exc:
            raise DownloadError(
                f"cannot download the RGB archive {self.url}: HTTP {exc.code} {exc.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchUnavailable(
                f"cannot download the RGB archive {self.url}: {reason} (no network? give a "
                f"local copy with --rgb_archive PATH)"
            ) from None
        yield target

    def fetch(self, requests: list[RgbRequest], dest: Path) -> FetchResult:
        from ..io import fs as vfs

        self.check()
        res = FetchResult()
        wanted = {r.sequence: r for r in requests}
        dest.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(prefix=".tmp-vipe-archive-", dir=dest) as tmp,
            self._local_archive(Path(tmp)) as archive,
        ):
            try:
                zf = zipfile.ZipFile(archive)
            except zipfile.BadZipFile as exc:
                raise DownloadError(f"{self.url}: not a zip archive ({exc})") from None
            with zf:
                members = {}
                for info in zf.infolist():
                    base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
                    if info.is_dir() or not base.lower().endswith(".mp4"):
                        continue
                    seq = base[:-4]
                    if seq in wanted and seq not in members:
                        members[seq] = info
                for seq in wanted:
                    info = members.get(seq)
                    if info is None:
                        res.problems[seq] = f"{seq}.mp4 is not in the archive {self.url}"
                        continue
                    out = dest / f"{seq}.mp4"
                    with zf.open(info) as src, vfs.atomic_open(str(out), "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    res.files[out.name] = _digest(out)
        return res


def default_rgb_fetcher(
    prefix: str,
    rgb_archive: str | None = None,
    ytdlp: str | None = None,
    cookies_from_browser: str | None = None,
) -> RgbFetcher | None:
    """The fetcher ViPE's downloader uses for a dataset's unhosted RGB (None for datasets that host it)."""
    head = prefix.split("-", 1)[0]
    if head == "dpsp":
        return YtDlpFetcher(ytdlp, cookies_from_browser)
    if head == "w360":
        return ArchiveFetcher(rgb_archive or WEB360_RGB_URL)
    return None
