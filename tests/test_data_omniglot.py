"""Omniglot: reading the real zips, checksums, splits by alphabet, unpacked folders, Vinyals split."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cml.data import DataError, load_splits
from cml.data.omniglot import OMNIGLOT_FILES, load_omniglot, scan_omniglot, verify_file

SMALL = ("images_background_small1.zip", "images_background_small2.zip")


def _alphabets(pool) -> set[str]:
    return {name.split("/")[0] for name in pool.names}


def test_small_zips_split_by_alphabet(omniglot_root: Path) -> None:
    splits = load_splits("omniglot", str(omniglot_root), 28)
    train, val, test = _alphabets(splits.train), _alphabets(splits.val), _alphabets(splits.test)
    # 8 distinct alphabets: Greek and Latin are in both zips and are read once.
    assert len(train | val | test) == 8
    assert not (train & val or train & test or val & test)
    assert train and val and test
    assert len(splits.train) + len(splits.val) + len(splits.test) == 242
    assert "split 5/1/2" in splits.description
    # Deterministic: a second load gives the same split.
    again = load_omniglot(omniglot_root, 28)
    assert again.train.names == splits.train.names and again.test.names == splits.test.names


def test_images_are_inverted_resized_uint8(omniglot_root: Path) -> None:
    splits = load_omniglot(omniglot_root, 28)
    x = splits.val.images(0)
    assert x.shape == (20, 1, 28, 28) and str(x.dtype) == "torch.uint8"
    # Strokes bright on a dark background: most pixels are dark, the strokes reach near 255.
    assert float(x.float().mean()) < 60 and int(x.max()) > 200
    assert splits.val.count(0) == 20
    assert splits.test.channels == 1


def test_image_size_is_honoured(omniglot_root: Path) -> None:
    splits = load_omniglot(omniglot_root, 14)
    assert splits.train.images(0).shape[-2:] == (14, 14)


def test_checksums_match_the_table(omniglot_root: Path) -> None:
    for name in SMALL:
        verify_file(omniglot_root / name)  # raises on mismatch
    sums = dict(line.split()[::-1] for line in (omniglot_root / "SHA256SUMS").read_text().splitlines() if line)
    for name in SMALL:
        assert OMNIGLOT_FILES[name][1] == sums[name]
        assert OMNIGLOT_FILES[name][0] == (omniglot_root / name).stat().st_size


def test_corrupted_zip_is_refused(omniglot_root: Path, tmp_path: Path) -> None:
    data = bytearray((omniglot_root / SMALL[0]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / SMALL[0]).write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_omniglot(tmp_path)
    assert SMALL[0] in str(err.value) and OMNIGLOT_FILES[SMALL[0]][1] in str(err.value)


def test_unpacked_folder_matches_zip(omniglot_root: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(omniglot_root / SMALL[0]) as z:
        z.extractall(tmp_path / "unpacked")
    from_zip = scan_omniglot(tmp_path / "unpacked")  # images_background_small1/ folder
    assert set(from_zip) == {"images_background_small1"}
    chars = [c.label for a in from_zip["images_background_small1"].values() for c in a]
    assert len(chars) == 136
    # A plain folder of alphabets works too.
    plain = load_omniglot(tmp_path / "unpacked" / "images_background_small1", 28)
    assert len(plain.train) + len(plain.val) + len(plain.test) == 136
    # Same pixels whichever way the character is read.
    zipped = load_omniglot(omniglot_root, 28)
    where = {n: (pool, i) for pool in (zipped.train, zipped.val, zipped.test) for i, n in enumerate(pool.names)}
    name = plain.train.names[0]
    pool, i = where[name]
    assert np.array_equal(plain.train.images(0).numpy(), pool.images(i).numpy())


def test_missing_root_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        load_omniglot(tmp_path / "nope")
    with pytest.raises(DataError, match="no Omniglot data"):
        load_omniglot(tmp_path)
    with pytest.raises(DataError, match="needs --data"):
        load_splits("omniglot", None, 28)


def test_vinyals_needs_full_sets(omniglot_root: Path) -> None:
    with pytest.raises(DataError, match="Vinyals split needs images_background and images_evaluation"):
        load_omniglot(omniglot_root, split="vinyals")
    with pytest.raises(DataError, match="unknown Omniglot split"):
        load_omniglot(omniglot_root, split="random")


def _png(value: int) -> bytes:
    img = Image.new("1", (105, 105), 1)
    img.putpixel((value % 105, 50), 0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fake_full_set(folder: Path, stem: str, alphabets: int, characters: int) -> None:
    """A zip with the official layout: one image per character keeps it fast."""
    png = _png(3)
    with zipfile.ZipFile(folder / f"{stem}.zip", "w") as z:
        for a in range(alphabets):
            for c in range(characters):
                z.writestr(f"{stem}/{stem[7:10]}_alpha{a:02d}/character{c + 1:02d}/0001_01.png", png)


def test_lake_and_vinyals_splits_with_full_sets(tmp_path: Path) -> None:
    # Stand-ins for the full sets (the real ones are not in ../shared): 30 x 33 = 990 and 20 x 32 = 640
    # characters, the official names, so checksums must be skipped.
    _fake_full_set(tmp_path, "images_background", 30, 33)
    _fake_full_set(tmp_path, "images_evaluation", 20, 32)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_omniglot(tmp_path)
    lake = load_omniglot(tmp_path, 28, verify=False)
    bg_val = _alphabets(lake.val)
    assert len(bg_val) == 5 and len(_alphabets(lake.train)) == 25 and len(_alphabets(lake.test)) == 20
    assert all(a.startswith("bac_") for a in bg_val | _alphabets(lake.train))
    assert all(a.startswith("eva_") for a in _alphabets(lake.test))
    vin = load_omniglot(tmp_path, 28, split="vinyals", verify=False)
    assert (len(vin.train), len(vin.val), len(vin.test)) == (1100, 100, 1630 - 1200)
    assert not set(vin.train.names) & set(vin.test.names)
    assert not set(vin.val.names) & set(vin.test.names)
    # Background characters come first: all 990 are training characters.
    assert sum(n.startswith("bac_") for n in vin.train.names) == 990


def test_small_zips_beside_full_ones_are_deduplicated(omniglot_root: Path, tmp_path: Path) -> None:
    for name in SMALL:
        shutil.copy(omniglot_root / name, tmp_path / name)
    found = scan_omniglot(tmp_path)
    # Greek and Latin are read from small1 only.
    assert set(found["images_background_small1"]) >= {"Greek", "Latin"}
    assert not {"Greek", "Latin"} & set(found["images_background_small2"])
