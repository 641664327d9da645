"""Omniglot (Lake, Salakhutdinov & Tenenbaum, 2015), read straight from the official zip files.

The data set's repository (github.com/brendenlake/omniglot, folder ``python/``) publishes four zips with the layout
``<zip stem>/<alphabet>/characterNN/<id>_<drawer>.png`` (105x105, 1-bit, black strokes on white, 20 drawers per
character):

* ``images_background.zip``: 30 alphabets, 964 characters (Lake's training set);
* ``images_evaluation.zip``: 20 alphabets, 659 characters (Lake's evaluation set);
* ``images_background_small1.zip`` and ``images_background_small2.zip``: 5 background alphabets each (Greek and
  Latin are in both, byte-identical: 8 distinct alphabets, 242 characters).

A root folder may hold any of these zips, the same folders already unpacked, or a plain folder of alphabets. An
alphabet found in several sources is read from the first (full sets before small ones).

Images are inverted so strokes are bright (255) on a dark (0) background, the project's convention, and resized
with antialiasing to ``image_size``. Rotation augmentation is the sampler's job (``TaskSampler(rotations=True)``).
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cml.data.base import ClassPool, DataError, Splits, image_to_array
from cml.data.download import fetch_file, sha256_file

OFFICIAL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"

#: The single source of truth for the official files: size in bytes and SHA-256. The two small zips' hashes are
#: the ones in the project's shared copy (../shared/data/omniglot/SHA256SUMS); all four agree with TensorFlow
#: Datasets' published checksums for the same URLs (tensorflow_datasets/url_checksums/omniglot.txt), which is
#: where the two full sets' hashes come from.
OMNIGLOT_FILES: dict[str, tuple[int, str]] = {
    "images_background.zip": (9464212, "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640"),
    "images_evaluation.zip": (6462886, "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee"),
    "images_background_small1.zip": (1319022, "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"),
    "images_background_small2.zip": (1580917, "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"),
}
#: Sources in priority order: an alphabet present in several is read from the first.
_SOURCES = ("images_background", "images_evaluation", "images_background_small1", "images_background_small2")
#: Characters in Vinyals et al.'s (2016) training set: the first 1200 of the 1623, background before evaluation.
VINYALS_TRAIN_CHARACTERS = 1200


class _ZipReader:
    """One open ``ZipFile`` shared by the lazy class loaders (reopening the archive per class is slow)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._lock = threading.Lock()  # ZipFile reads from one handle are not thread-safe

    def read(self, member: str) -> bytes:
        with self._lock:
            if self._zip is None:
                try:
                    self._zip = zipfile.ZipFile(self.path)
                except (OSError, zipfile.BadZipFile) as exc:
                    raise DataError(f"cannot open {self.path}: {exc}; download it again") from exc
            try:
                return self._zip.read(member)
            except (KeyError, zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"cannot read {member} from {self.path}: {exc}; download it again") from exc


@dataclass(frozen=True)
class Character:
    """One Omniglot character: its alphabet, its folder name, where it comes from, and its image files."""

    alphabet: str
    name: str
    source: str  # the zip stem it came from ("images_background", ...) or "folder"
    files: tuple[str, ...]
    read: Callable[[str], bytes]

    @property
    def label(self) -> str:
        return f"{self.alphabet}/{self.name}"


def _folder_reader(base: Path) -> Callable[[str], bytes]:
    def read(member: str) -> bytes:
        try:
            return (base / member).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {base / member}: {exc}") from exc

    return read


def _characters_from_names(names: Sequence[str], prefix: str, source: str, read) -> dict[str, list[Character]]:
    """Group ``<prefix><alphabet>/<character>/<file>.png`` paths into characters, by alphabet."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for name in names:
        if not name.startswith(prefix) or not name.lower().endswith(".png"):
            continue
        parts = name[len(prefix):].split("/")
        if len(parts) != 3 or parts[0].startswith(".") or parts[1].startswith("."):
            continue
        grouped.setdefault((parts[0], parts[1]), []).append(name)
    alphabets: dict[str, list[Character]] = {}
    for (alphabet, character), files in sorted(grouped.items()):
        alphabets.setdefault(alphabet, []).append(Character(alphabet, character, source, tuple(sorted(files)), read))
    return alphabets


def verify_file(path: Path, *, verify: bool = True) -> None:
    """Check a known Omniglot file's SHA-256 against :data:`OMNIGLOT_FILES`; unknown names are not checked.

    Raises:
        DataError: naming the file, the expected and the actual hash.
    """
    if not verify or path.name not in OMNIGLOT_FILES:
        return
    expected = OMNIGLOT_FILES[path.name][1]
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: expected SHA-256 {expected}, got {actual}; the file is corrupted or "
            f"not the official one: delete it and download it again "
            f"(python -m cml data download omniglot --root {path.parent})"
        )


def scan_omniglot(root: str | Path, *, verify: bool = True) -> dict[str, dict[str, list[Character]]]:
    """Find the Omniglot alphabets under ``root``.

    Args:
        root: a folder holding official zips (any of :data:`OMNIGLOT_FILES`), their unpacked folders, or a plain
            folder of ``<alphabet>/<character>/*.png``.
        verify: check the SHA-256 of the official zips found.

    Returns:
        ``{source: {alphabet: [characters]}}`` where ``source`` is a zip stem from :data:`_SOURCES` or
        ``"folder"``; each alphabet appears under one source only (the first in priority order).

    Raises:
        DataError: if ``root`` is missing, a zip is corrupted or fails its checksum, or no alphabet is found.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(
            f"Omniglot root {base} is not a folder; point --data at the folder holding images_background.zip and "
            f"images_evaluation.zip (download them with `python -m cml data download omniglot --root {base}`)"
        )
    found: dict[str, dict[str, list[Character]]] = {}
    seen: set[str] = set()
    for stem in _SOURCES:
        zpath, folder = base / f"{stem}.zip", base / stem
        if zpath.is_file():
            verify_file(zpath, verify=verify)
            try:
                with zipfile.ZipFile(zpath) as z:
                    names = z.namelist()
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"{zpath} is not a readable zip ({exc}); delete it and download it again") from exc
            alphabets = _characters_from_names(names, f"{stem}/", stem, _ZipReader(zpath).read)
        elif folder.is_dir():
            names = [p.relative_to(base).as_posix() for p in folder.glob("*/*/*") if p.is_file()]
            alphabets = _characters_from_names(names, f"{stem}/", stem, _folder_reader(base))
        else:
            continue
        unique = {a: chars for a, chars in alphabets.items() if a not in seen}
        seen.update(unique)
        if unique:
            found[stem] = unique
    if not found:
        # A plain folder of alphabets: root/<alphabet>/<character>/*.png.
        names = [p.relative_to(base).as_posix() for p in base.glob("*/*/*") if p.is_file()]
        alphabets = _characters_from_names(names, "", "folder", _folder_reader(base))
        if alphabets:
            found["folder"] = alphabets
    if not found:
        raise DataError(
            f"no Omniglot data under {base}: expected any of {', '.join(OMNIGLOT_FILES)} (or their unpacked "
            f"folders, or <alphabet>/<character>/*.png); download the official files with "
            f"`python -m cml data download omniglot --root {base}`"
        )
    return found


def _spread(items: Sequence[str], k: int) -> list[str]:
    """``k`` items evenly spaced through ``items`` (deterministic, mixes the alphabetical range)."""
    n = len(items)
    return [items[int((j + 0.5) * n / k)] for j in range(k)] if k else []


def _pool(characters: Sequence[Character], image_size: int, source: str) -> ClassPool:
    def loader(c: Character) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            return np.stack([image_to_array(c.read(f), image_size, channels=1, invert=True, name=f) for f in c.files])

        return load

    return ClassPool([c.label for c in characters], [loader(c) for c in characters], source)


def load_omniglot(
    root: str | Path | None,
    image_size: int = 28,
    *,
    seed: int = 0,
    split: str = "lake",
    val_alphabets: int = 5,
    val_characters: int = 100,
    verify: bool = True,
) -> Splits:
    """Omniglot split by alphabet.

    Args:
        root: see :func:`scan_omniglot`.
        image_size: output side in pixels (28 is the usual size for MAML and CML).
        seed: unused (the splits are fixed); accepted so all loaders share one signature.
        split: ``"lake"``: with both full sets, the background alphabets are train (minus ``val_alphabets``
            of them, evenly spaced in sorted order, for val) and the evaluation alphabets are test; with any
            other set of alphabets (e.g. only the small zips) the sorted alphabets are split about 5/1/2 (test:
            a quarter, val: an eighth, at least one each), evenly spaced, disjoint. ``"vinyals"``: the first
            1200 characters (background alphabets then evaluation alphabets, each sorted) are train, the other
            423 test; the last ``val_characters`` of the 1200 are val. Needs both full sets.
        val_alphabets: background alphabets held out for val in the Lake split with the full sets.
        val_characters: characters carved from the end of Vinyals' training characters for val.
        verify: check the zips' SHA-256.

    Raises:
        DataError: missing or corrupted data, an unknown split, or too few alphabets for three splits.
    """
    del seed
    if root is None:
        raise DataError("the omniglot data set needs --data PATH: a folder holding images_background.zip and "
                        "images_evaluation.zip (`python -m cml data download omniglot --root PATH` fetches them), or "
                        "the small zips")
    found = scan_omniglot(root, verify=verify)
    full = "images_background" in found and "images_evaluation" in found
    base = Path(root).expanduser()

    def chars_of(alphabets: dict[str, list[Character]], names: Sequence[str]) -> list[Character]:
        return [c for a in names for c in alphabets[a]]

    if split == "vinyals":
        if not full:
            raise DataError(
                f"the Vinyals split needs images_background and images_evaluation under {base} (found: "
                f"{', '.join(found)}); download them with `python -m cml data download omniglot --root {base}` or "
                f"use split='lake'"
            )
        ordered = [c for stem in ("images_background", "images_evaluation")
                   for a in sorted(found[stem]) for c in found[stem][a]]
        if len(ordered) <= VINYALS_TRAIN_CHARACTERS or not 0 < val_characters < VINYALS_TRAIN_CHARACTERS:
            raise DataError(
                f"the Vinyals split needs more than {VINYALS_TRAIN_CHARACTERS} characters (found {len(ordered)} "
                f"under {base}) and 0 < val_characters < {VINYALS_TRAIN_CHARACTERS} (got {val_characters})"
            )
        cut = VINYALS_TRAIN_CHARACTERS - val_characters
        parts = (ordered[:cut], ordered[cut:VINYALS_TRAIN_CHARACTERS], ordered[VINYALS_TRAIN_CHARACTERS:])
        description = (
            f"Omniglot from {base}, Vinyals split: first {VINYALS_TRAIN_CHARACTERS} characters (background then "
            f"evaluation alphabets, sorted) for training, of which the last {val_characters} are val; the other "
            f"{len(parts[2])} are test"
        )
    elif split == "lake":
        if full:
            background = sorted(found["images_background"])
            if not 0 < val_alphabets < len(background):
                raise DataError(f"val_alphabets={val_alphabets} must be between 1 and {len(background) - 1}")
            val = _spread(background, val_alphabets)
            train = [a for a in background if a not in val]
            test = sorted(found["images_evaluation"])
            parts = (chars_of(found["images_background"], train), chars_of(found["images_background"], val),
                     chars_of(found["images_evaluation"], test))
            description = (
                f"Omniglot from {base}, Lake split: background alphabets for training ({len(train)}) and val "
                f"({', '.join(val)}); evaluation alphabets ({len(test)}) for test"
            )
        else:
            alphabets = {a: chars for per_source in found.values() for a, chars in per_source.items()}
            names = sorted(alphabets)
            if len(names) < 3:
                raise DataError(
                    f"Omniglot under {base} has {len(names)} alphabet(s) ({', '.join(names)}); splitting by "
                    f"alphabet needs at least 3; add images_background.zip and images_evaluation.zip"
                )
            n_test, n_val = max(1, round(len(names) / 4)), max(1, round(len(names) / 8))
            test = _spread(names, n_test)
            rest = [a for a in names if a not in test]
            val = _spread(rest, n_val)
            train = [a for a in rest if a not in val]
            parts = (chars_of(alphabets, train), chars_of(alphabets, val), chars_of(alphabets, test))
            description = (
                f"Omniglot from {base} ({', '.join(f'{s}' for s in found)}; the full background and evaluation "
                f"sets are not both present, so the {len(names)} alphabets are split "
                f"{len(train)}/{len(val)}/{len(test)} by sorted name): train {', '.join(train)}; val "
                f"{', '.join(val)}; test {', '.join(test)}"
            )
    else:
        raise DataError(f"unknown Omniglot split {split!r}; use 'lake' or 'vinyals'")

    counts = "/".join(str(len(p)) for p in parts)
    return Splits(
        _pool(parts[0], image_size, f"{base} (train)"),
        _pool(parts[1], image_size, f"{base} (val)"),
        _pool(parts[2], image_size, f"{base} (test)"),
        f"{description}; {counts} characters",
    )


def download_omniglot(
    root: str | Path,
    base_url: str = OFFICIAL,
    files: Sequence[str] = ("images_background.zip", "images_evaluation.zip"),
    progress: bool = True,
    *,
    sha256: dict[str, str] | None = None,
    verify: bool = True,
) -> list[Path]:
    """Download Omniglot zips from the data set's official repository into ``root``.

    Each file is written to ``<name>.part``, resumed with an HTTP Range request if a ``.part`` exists, and
    renamed to its final name only when its SHA-256 matches (see :func:`cml.data.download.fetch_file`). A file
    already present with the right hash is not downloaded again.

    Args:
        root: destination folder (created if needed).
        base_url: folder URL the file names are appended to.
        files: file names to fetch.
        progress: write progress to stderr.
        sha256: ``{file name: hex digest}`` overriding :data:`OMNIGLOT_FILES` (for mirrors and tests).
        verify: False downloads files whose hash is unknown without checking them (explicit trust).

    Returns:
        The final paths, in the order of ``files``.

    Raises:
        DataError: a file's expected hash is unknown (and ``verify`` is True), the server is unreachable, the
            connection dropped (rerun to resume), or the checksum does not match (names file and both hashes).
    """
    dest = Path(root).expanduser()
    overrides = {k: v.lower() for k, v in (sha256 or {}).items()}
    paths = []
    for name in files:
        expected = overrides.get(name) or (OMNIGLOT_FILES[name][1] if name in OMNIGLOT_FILES else None)
        if expected is None and verify:
            raise DataError(
                f"no known SHA-256 for {name!r} (known: {', '.join(OMNIGLOT_FILES)}); pass sha256={{{name!r}: ...}} "
                f"or verify=False to download it unchecked"
            )
        url = base_url.rstrip("/") + "/" + name
        paths.append(fetch_file(url, dest / name, expected if verify else None, progress=progress))
    return paths
