"""download_omniglot against a local HTTP server serving the real zips under their official names."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from cml.data import DataError
from cml.data.omniglot import OMNIGLOT_FILES, download_omniglot, load_omniglot

SMALL1 = "images_background_small1.zip"
SMALL2 = "images_background_small2.zip"


class _Server:
    """Serves files from a folder; ``mode`` makes it misbehave: ``ok``, ``corrupt``, ``drop`` (sends a
    Content-Length but closes after half the bytes, once), ``norange`` (ignores Range: always 200)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mode = "ok"
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                name = self.path.rsplit("/", 1)[-1]
                path = server.folder / name
                range_header = self.headers.get("Range")
                if not path.is_file():
                    server.requests.append((name, range_header, 404))
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if server.mode == "corrupt":
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                start = 0
                if range_header and server.mode != "norange":
                    start = int(range_header.split("=")[1].split("-")[0])
                if start:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    server.requests.append((name, range_header, 206))
                else:
                    self.send_response(200)
                    server.requests.append((name, range_header, 200))
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.mode == "drop":
                    server.mode = "ok"  # drop once; the rerun then resumes
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/python/"
        # A short poll interval makes shutdown() quick at teardown.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(omniglot_root: Path) -> Iterator[_Server]:
    s = _Server(omniglot_root)
    yield s
    s.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_good_download_is_verified_and_loadable(server: _Server, tmp_path: Path) -> None:
    paths = download_omniglot(tmp_path, server.url, files=(SMALL1, SMALL2), progress=False)
    assert paths == [tmp_path / SMALL1, tmp_path / SMALL2]
    for p in paths:
        assert _sha(p) == OMNIGLOT_FILES[p.name][1]
    assert not list(tmp_path.glob("*.part"))
    splits = load_omniglot(tmp_path, 28)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 242
    # Present and verified: a second call downloads nothing.
    n = len(server.requests)
    download_omniglot(tmp_path, server.url, files=(SMALL1,), progress=False)
    assert len(server.requests) == n


def test_checksum_mismatch_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    server.mode = "corrupt"
    with pytest.raises(DataError) as err:
        download_omniglot(tmp_path, server.url, files=(SMALL1,), progress=False)
    message = str(err.value)
    assert "checksum mismatch" in message and SMALL1 in message and OMNIGLOT_FILES[SMALL1][1] in message
    assert not (tmp_path / SMALL1).exists()
    assert not (tmp_path / f"{SMALL1}.part").exists()


def test_dropped_connection_then_resume(server: _Server, tmp_path: Path) -> None:
    server.mode = "drop"
    with pytest.raises(DataError, match="rerun to resume"):
        download_omniglot(tmp_path, server.url, files=(SMALL1,), progress=False)
    part = tmp_path / f"{SMALL1}.part"
    assert not (tmp_path / SMALL1).exists()
    size = OMNIGLOT_FILES[SMALL1][0]
    assert part.stat().st_size == size // 2
    download_omniglot(tmp_path, server.url, files=(SMALL1,), progress=False)
    assert server.requests[-1] == (SMALL1, f"bytes={size // 2}-", 206)
    assert _sha(tmp_path / SMALL1) == OMNIGLOT_FILES[SMALL1][1]
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    part = tmp_path / f"{SMALL1}.part"
    part.write_bytes(b"garbage that must not be kept" * 100)
    server.mode = "norange"
    download_omniglot(tmp_path, server.url, files=(SMALL1,), progress=False)
    assert server.requests[-1][1] is not None and server.requests[-1][2] == 200
    assert _sha(tmp_path / SMALL1) == OMNIGLOT_FILES[SMALL1][1]
    assert not part.exists()


def test_unknown_hash_is_an_error_unless_given(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no known SHA-256"):
        download_omniglot(tmp_path, server.url, files=("mirror.zip",), progress=False)
    assert server.requests == []  # refused before any network access
    # An override replaces the table's hash (mirrors, tests); a wrong override is caught.
    with pytest.raises(DataError, match="checksum mismatch"):
        download_omniglot(tmp_path, server.url, files=(SMALL2,), progress=False, sha256={SMALL2: "0" * 64})
    path = download_omniglot(tmp_path, server.url, files=(SMALL2,), progress=False,
                             sha256={SMALL2: OMNIGLOT_FILES[SMALL2][1]})[0]
    assert _sha(path) == OMNIGLOT_FILES[SMALL2][1]


def test_http_error_and_unreachable_server(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        download_omniglot(tmp_path, server.url, files=("missing.zip",), progress=False, verify=False)
    with pytest.raises(DataError, match="could not reach"):
        download_omniglot(tmp_path, "http://127.0.0.1:9/python/", files=(SMALL1,), progress=False)
    assert not list(tmp_path.iterdir())


def test_progress_is_a_tqdm_bar_on_stderr(server: _Server, tmp_path: Path, capsys) -> None:
    download_omniglot(tmp_path, server.url, files=(SMALL2,), progress=True)
    err = capsys.readouterr().err
    size = (tmp_path / SMALL2).stat().st_size
    # tqdm's byte bar: the file's name, 100% and the total in binary units.
    assert SMALL2 in err and "100%" in err and f"{size / 1024 ** 2:.2f}M" in err
