"""Resumable, checksum-verified file downloads with the standard library only (``urllib``).

A download is written to ``<name>.part`` beside its final name and renamed only once its SHA-256 matches, so the
final name never holds a partial or corrupted file. A ``.part`` left by an interrupted run is resumed with an
HTTP ``Range`` request; a server that ignores the range (answers 200 instead of 206) makes the download restart
cleanly from byte 0.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from cml.data.base import DataError
from cml.records import make_folder

_CHUNK = 1 << 16


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(
    url: str,
    dest: str | Path,
    sha256: str | None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, and verify its SHA-256.

    Args:
        url: what to fetch (``http``, ``https`` or ``file`` URL).
        dest: the final path. If it already exists with the expected hash, nothing is downloaded.
        sha256: the expected hex digest; None skips verification (the caller must have decided to trust the
            source explicitly).
        progress: show a tqdm progress bar (on stderr).
        timeout: seconds to wait for the server on each network operation.

    Returns:
        ``dest``.

    Raises:
        DataError: the server could not be reached or answered an error (names the URL); the connection dropped
            before the whole file arrived (the ``.part`` is kept: rerun to resume); the downloaded file's hash
            differs from ``sha256`` (the ``.part`` is deleted; names the file, the expected and the actual hash).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        if expected is None or sha256_file(dest) == expected:
            return dest
        # A file under the final name with the wrong content was not written by us (we rename only verified
        # files); fetch a good copy beside it and replace it only once verified.
    make_folder(dest.parent, "--root")

    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "cml-data/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The .part is already complete (an earlier run stopped before renaming): verify it as it is.
            return _finish(part, dest, expected)
        raise DataError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DataError(
            f"could not reach {url} ({getattr(exc, 'reason', exc)}); check the network, or download the file "
            f"by hand to {dest}"
        ) from exc

    with response:
        status = getattr(response, "status", 200)
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DataError(
                    f"downloading {url}: asked for bytes from {offset} but the server sent {content_range!r}; "
                    f"delete {part} and rerun"
                )
            mode = "ab"
        else:
            # No range asked, or the server ignored it (200): start again from byte 0.
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        total = offset + remaining if remaining is not None else None
        received = 0
        # tqdm writes to stderr; a resumed download starts the bar at the bytes already on disk.
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                   disable=not progress)
        try:
            with open(part, mode) as out:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(
                f"the connection dropped while downloading {url} after {offset + received} bytes ({exc}); "
                f"rerun to resume from {part}"
            ) from exc
        finally:
            bar.close()
        if remaining is not None and received < remaining:
            raise DataError(
                f"the connection dropped while downloading {url}: got {offset + received} of {total} bytes; "
                f"rerun to resume from {part}"
            )
    return _finish(part, dest, expected)


def _finish(part: Path, dest: Path, expected: str | None) -> Path:
    """Verify a complete ``.part`` and rename it to ``dest``; delete it on a hash mismatch."""
    if expected is not None:
        actual = sha256_file(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise DataError(
                f"checksum mismatch for {dest.name}: expected SHA-256 {expected}, got {actual}; the download was "
                f"deleted; rerun, and if it fails again the server's copy differs from the one this code knows"
            )
    os.replace(part, dest)
    return dest
