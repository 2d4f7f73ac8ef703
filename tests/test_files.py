"""Tests for course_utils._download: atomic, checksum-verified downloads and safe extraction."""

from __future__ import annotations

import gzip
import zipfile

import pytest

from course_utils import _files as _download


def test_download_verifies_checksum_and_leaves_nothing(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"hello data")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(_download.DownloadError, match="checksum mismatch"):
        _download.download_file([source.as_uri()], dest, md5="0" * 32)
    assert list(dest.parent.iterdir()) == []
    _download.download_file([source.as_uri()], dest, md5=_download.file_digest(source))
    assert dest.read_bytes() == b"hello data"


def test_download_tries_mirrors_in_order(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x")
    dest = tmp_path / "file.bin"
    _download.download_file([(tmp_path / "missing").as_uri(), source.as_uri()], dest)
    assert dest.read_bytes() == b"x"


def test_silent_host_fails_fast(tmp_path):
    # A server on loopback that accepts the connection but never answers: without a timeout urlopen would
    # wait forever (torchvision's downloads do); ours gives up after `timeout` seconds.
    import socket
    import time

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/file.gz"
        start = time.perf_counter()
        with pytest.raises(_download.DownloadError, match="could not download"):
            _download.download_file([url], tmp_path / "f.gz", timeout=0.5)
        assert time.perf_counter() - start < 5
    assert not any(tmp_path.iterdir())


def test_gunzip_rejects_corrupt_archive(tmp_path):
    good = tmp_path / "a.gz"
    good.write_bytes(gzip.compress(b"abc" * 100))
    assert _download.gunzip(good, tmp_path / "a").read_bytes() == b"abc" * 100
    bad = tmp_path / "b.gz"
    bad.write_bytes(gzip.compress(b"abc" * 100)[:20])
    with pytest.raises(_download.DownloadError, match="not a valid gzip"):
        _download.gunzip(bad, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_safe_extract_refuses_zip_slip(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/ok.txt", "fine")
        zf.writestr("top/../../escape.txt", "bad")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(_download.DownloadError, match="unsafe path"):
        _download.safe_extract_zip(archive, out, "top")
    assert not (tmp_path / "escape.txt").exists() and list(out.iterdir()) == []


def test_safe_extract_rejects_truncated_zip(tmp_path):
    archive = tmp_path / "cut.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.txt", "x" * 1000)
    archive.write_bytes(archive.read_bytes()[:50])
    with pytest.raises(_download.DownloadError, match="not a valid zip"):
        _download.safe_extract_zip(archive, tmp_path, "top")
