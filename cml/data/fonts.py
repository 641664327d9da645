"""The no-download default data set: one class per Unicode character, drawn by matplotlib's fonts.

Every installation of matplotlib ships TrueType fonts (``matplotlib/mpl-data/fonts/ttf``: DejaVu Sans, Serif and
Mono in several styles, STIX, the Computer Modern ``cm*`` fonts). This module turns them into an Omniglot-like
few-shot data set:

* **Classes** are characters. A character is kept when at least ``min_faces`` font files draw it (checked in the
  font's own character map, so a font that lacks the glyph never contributes a fallback box), it is a visible
  stand-alone character (no controls, whitespace, private-use code points or combining marks), it is its own
  NFKD decomposition (drops accented variants such as "é" and compatibility forms such as "ﬁ" or "²"), and its
  rendering does not nearly coincide with an already kept class (drops Greek omicron and Cyrillic "о" beside
  Latin "o", and so on).
* **Instances** are the font faces that draw the character, each with a small random affine distortion
  (rotation, scale, shear, translation) from a ``numpy`` Generator seeded with ``(seed, code point)``, so every
  class is reproducible on its own. Each class has ``images_per_class`` images (20 by default, like Omniglot),
  strokes bright on a dark background.
* **Splits** are by script or symbol family (Latin, Greek, Cyrillic, Armenian, arrows, mathematical operators,
  box drawing, ...), like Omniglot's split by alphabet: whole families go to train, val or test.

The Computer Modern fonts use TeX encodings, not Unicode: their character maps put, for instance, omega at the
code point of "!". Glyph names are reliable in these fonts, so a glyph's character is taken from its name
(Adobe Glyph List, ``fontTools.agl``) whenever the name decodes, and from the code point only in fonts whose
decodable names agree with their code points (Unicode fonts).

Rendering takes a few seconds; the result is cached as a compressed ``.npz`` in :func:`cache_dir`, keyed by a
hash of the parameters, the font files and the FreeType version (rendering can differ across FreeType versions;
on one installation the same seed gives byte-identical arrays).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cml.data.base import ClassPool, DataError, Splits

#: Bump when the rendering or the selection changes, so stale caches are not reused.
FONTS_VERSION = 4
DEFAULT_IMAGES_PER_CLASS = 20
DEFAULT_MIN_FACES = 5
#: Mean absolute difference (images in [0, 1]) under which two classes' mean renderings count as the same
#: character. Measured on the matplotlib fonts: pairs under 0.05 are homoglyphs or near-homoglyphs ("N"/Greek
#: Nu, "3"/Cyrillic Ze, braille patterns that differ only in their position in the cell); case pairs such as
#: psi/Psi lie above 0.05.
DEFAULT_DUPLICATE_THRESHOLD = 0.05
#: Script families held out for validation and testing; every other family is training data. Each held-out split
#: mixes a script with a symbol family (about 15% of the classes each with the default parameters: see
#: the README's "The fonts data set, measured"), so neither is a single homogeneous kind of shape.
VAL_FAMILIES = ("Georgian", "Arrows")
TEST_FAMILIES = ("Armenian", "Cyrillic", "Geometric shapes", "Currency")
#: Fonts that draw every code point as a placeholder, never a real glyph.
EXCLUDED_FONTS = ("LastResort",)
#: Fraction of the canvas that the longer side of an undistorted glyph fills (the rest is margin for distortion).
_FILL = 0.8
#: Supersampling factor: glyphs are transformed at this multiple of the output size and box-filtered down.
_SUPERSAMPLE = 2
#: A font's character map is trusted as Unicode when this fraction of its named glyphs agree with their code points.
_UNICODE_CMAP_AGREEMENT = 0.95

# Unicode blocks (start, end inclusive, block name, family). The family groups blocks of one script or one kind
# of symbol; splits assign whole families. Ranges follow the Unicode Character Database's Blocks.txt. A code
# point outside the table falls in a family named after its 128-code-point range.
_BLOCKS: tuple[tuple[int, int, str, str], ...] = (
    (0x0000, 0x007F, "Basic Latin", "Latin"),
    (0x0080, 0x00FF, "Latin-1 Supplement", "Latin"),
    (0x0100, 0x017F, "Latin Extended-A", "Latin"),
    (0x0180, 0x024F, "Latin Extended-B", "Latin"),
    (0x0250, 0x02AF, "IPA Extensions", "Phonetic"),
    (0x02B0, 0x02FF, "Spacing Modifier Letters", "Phonetic"),
    (0x0300, 0x036F, "Combining Diacritical Marks", "Combining"),
    (0x0370, 0x03FF, "Greek and Coptic", "Greek"),
    (0x0400, 0x04FF, "Cyrillic", "Cyrillic"),
    (0x0500, 0x052F, "Cyrillic Supplement", "Cyrillic"),
    (0x0530, 0x058F, "Armenian", "Armenian"),
    (0x0590, 0x05FF, "Hebrew", "Hebrew"),
    (0x0600, 0x06FF, "Arabic", "Arabic"),
    (0x0700, 0x074F, "Syriac", "Syriac"),
    (0x0780, 0x07BF, "Thaana", "Thaana"),
    (0x07C0, 0x07FF, "NKo", "NKo"),
    (0x0E00, 0x0E7F, "Thai", "Thai"),
    (0x0E80, 0x0EFF, "Lao", "Lao"),
    (0x10A0, 0x10FF, "Georgian", "Georgian"),
    (0x1100, 0x11FF, "Hangul Jamo", "Hangul"),
    (0x1200, 0x137F, "Ethiopic", "Ethiopic"),
    (0x13A0, 0x13FF, "Cherokee", "Cherokee"),
    (0x1400, 0x167F, "Unified Canadian Aboriginal Syllabics", "Canadian Syllabics"),
    (0x1680, 0x169F, "Ogham", "Ogham"),
    (0x16A0, 0x16FF, "Runic", "Runic"),
    (0x1D00, 0x1D7F, "Phonetic Extensions", "Phonetic"),
    (0x1D80, 0x1DBF, "Phonetic Extensions Supplement", "Phonetic"),
    (0x1DC0, 0x1DFF, "Combining Diacritical Marks Supplement", "Combining"),
    (0x1E00, 0x1EFF, "Latin Extended Additional", "Latin"),
    (0x1F00, 0x1FFF, "Greek Extended", "Greek"),
    (0x2000, 0x206F, "General Punctuation", "Punctuation"),
    (0x2070, 0x209F, "Superscripts and Subscripts", "Letterlike and number forms"),
    (0x20A0, 0x20CF, "Currency Symbols", "Currency"),
    (0x20D0, 0x20FF, "Combining Diacritical Marks for Symbols", "Combining"),
    (0x2100, 0x214F, "Letterlike Symbols", "Letterlike and number forms"),
    (0x2150, 0x218F, "Number Forms", "Letterlike and number forms"),
    (0x2190, 0x21FF, "Arrows", "Arrows"),
    (0x2200, 0x22FF, "Mathematical Operators", "Mathematical operators"),
    (0x2300, 0x23FF, "Miscellaneous Technical", "Technical"),
    (0x2400, 0x243F, "Control Pictures", "Technical"),
    (0x2440, 0x245F, "Optical Character Recognition", "Technical"),
    (0x2460, 0x24FF, "Enclosed Alphanumerics", "Enclosed alphanumerics"),
    (0x2500, 0x257F, "Box Drawing", "Box drawing and blocks"),
    (0x2580, 0x259F, "Block Elements", "Box drawing and blocks"),
    (0x25A0, 0x25FF, "Geometric Shapes", "Geometric shapes"),
    (0x2600, 0x26FF, "Miscellaneous Symbols", "Miscellaneous symbols"),
    (0x2700, 0x27BF, "Dingbats", "Dingbats"),
    (0x27C0, 0x27EF, "Miscellaneous Mathematical Symbols-A", "Mathematical symbols"),
    (0x27F0, 0x27FF, "Supplemental Arrows-A", "Arrows"),
    (0x2800, 0x28FF, "Braille Patterns", "Braille"),
    (0x2900, 0x297F, "Supplemental Arrows-B", "Arrows"),
    (0x2980, 0x29FF, "Miscellaneous Mathematical Symbols-B", "Mathematical symbols"),
    (0x2A00, 0x2AFF, "Supplemental Mathematical Operators", "Mathematical operators"),
    (0x2B00, 0x2BFF, "Miscellaneous Symbols and Arrows", "Miscellaneous symbols"),
    (0x2C00, 0x2C5F, "Glagolitic", "Glagolitic"),
    (0x2C60, 0x2C7F, "Latin Extended-C", "Latin"),
    (0x2C80, 0x2CFF, "Coptic", "Coptic"),
    (0x2D00, 0x2D2F, "Georgian Supplement", "Georgian"),
    (0x2D30, 0x2D7F, "Tifinagh", "Tifinagh"),
    (0x2D80, 0x2DDF, "Ethiopic Extended", "Ethiopic"),
    (0x2DE0, 0x2DFF, "Cyrillic Extended-A", "Cyrillic"),
    (0x2E00, 0x2E7F, "Supplemental Punctuation", "Punctuation"),
    (0x2E80, 0x2EFF, "CJK Radicals Supplement", "CJK"),
    (0x2F00, 0x2FDF, "Kangxi Radicals", "CJK"),
    (0x3000, 0x303F, "CJK Symbols and Punctuation", "CJK"),
    (0x3040, 0x309F, "Hiragana", "Kana"),
    (0x30A0, 0x30FF, "Katakana", "Kana"),
    (0x3100, 0x312F, "Bopomofo", "Bopomofo"),
    (0x3130, 0x318F, "Hangul Compatibility Jamo", "Hangul"),
    (0x4DC0, 0x4DFF, "Yijing Hexagram Symbols", "Yijing"),
    (0x4E00, 0x9FFF, "CJK Unified Ideographs", "CJK"),
    (0xA4D0, 0xA4FF, "Lisu", "Lisu"),
    (0xA500, 0xA63F, "Vai", "Vai"),
    (0xA640, 0xA69F, "Cyrillic Extended-B", "Cyrillic"),
    (0xA6A0, 0xA6FF, "Bamum", "Bamum"),
    (0xA700, 0xA71F, "Modifier Tone Letters", "Phonetic"),
    (0xA720, 0xA7FF, "Latin Extended-D", "Latin"),
    (0xAB30, 0xAB6F, "Latin Extended-E", "Latin"),
    (0xAC00, 0xD7AF, "Hangul Syllables", "Hangul"),
    (0xE000, 0xF8FF, "Private Use Area", "Private use"),
    (0xFB00, 0xFB4F, "Alphabetic Presentation Forms", "Presentation forms"),
    (0xFB50, 0xFDFF, "Arabic Presentation Forms-A", "Arabic"),
    (0xFE00, 0xFE0F, "Variation Selectors", "Combining"),
    (0xFE20, 0xFE2F, "Combining Half Marks", "Combining"),
    (0xFE30, 0xFE4F, "CJK Compatibility Forms", "CJK"),
    (0xFE50, 0xFE6F, "Small Form Variants", "Presentation forms"),
    (0xFE70, 0xFEFF, "Arabic Presentation Forms-B", "Arabic"),
    (0xFF00, 0xFFEF, "Halfwidth and Fullwidth Forms", "Presentation forms"),
    (0xFFF0, 0xFFFF, "Specials", "Specials"),
    (0x1D400, 0x1D7FF, "Mathematical Alphanumeric Symbols", "Mathematical alphanumerics"),
    (0x1F000, 0x1F02F, "Mahjong Tiles", "Game symbols"),
    (0x1F030, 0x1F09F, "Domino Tiles", "Game symbols"),
    (0x1F0A0, 0x1F0FF, "Playing Cards", "Game symbols"),
    (0x1F300, 0x1F5FF, "Miscellaneous Symbols and Pictographs", "Pictographs"),
    (0x1F600, 0x1F64F, "Emoticons", "Pictographs"),
    (0x1F680, 0x1F6FF, "Transport and Map Symbols", "Pictographs"),
    (0x1F700, 0x1F77F, "Alchemical Symbols", "Alchemical"),
)


def unicode_block(char: str) -> tuple[str, str]:
    """The Unicode block of a character and the family it belongs to for splitting.

    Args:
        char: one character.

    Returns:
        ``(block, family)``, e.g. ``("Greek and Coptic", "Greek")``; for a code point outside the module's
        table both are ``"U+XXXX-U+YYYY"``, its 128-code-point range.
    """
    cp = ord(char)
    for start, end, block, family in _BLOCKS:
        if start <= cp <= end:
            return block, family
    lo = cp & ~0x7F
    name = f"U+{lo:04X}-U+{lo + 0x7F:04X}"
    return name, name


def is_candidate_character(char: str) -> bool:
    """Whether a character may become a class, before font coverage and duplicates are considered.

    Rejects controls, format characters, private-use and unassigned code points, whitespace and separators
    (categories C* and Z*), all marks (M*: combining marks have no shape of their own), the Specials block
    (the replacement character is a placeholder), and any character that is not its own NFKD decomposition
    (accented letters, ligatures, superscripts, full-width forms...).
    """
    category = unicodedata.category(char)
    if category[0] in "CZM" or unicodedata.combining(char):
        return False
    if 0xFFF0 <= ord(char) <= 0xFFFF:  # Specials: U+FFFD and U+FFFC are placeholders, not characters
        return False
    if char.isspace():
        return False
    return unicodedata.normalize("NFKD", char) == char


def font_dir() -> Path:
    """The folder of TrueType fonts that matplotlib ships."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def list_font_files(directory: str | Path | None = None) -> list[Path]:
    """The ``.ttf`` files used as font faces, sorted by name, without :data:`EXCLUDED_FONTS`.

    Raises:
        DataError: if the folder is missing or holds no usable font.
    """
    folder = Path(directory) if directory is not None else font_dir()
    if not folder.is_dir():
        raise DataError(f"font folder {folder} does not exist; is matplotlib installed completely?")
    files = sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() == ".ttf" and not any(x.lower() in p.name.lower() for x in EXCLUDED_FONTS)
    )
    if not files:
        raise DataError(f"no .ttf font in {folder}; the fonts data set needs matplotlib's bundled fonts")
    return files


def font_coverage(files: Sequence[Path]) -> dict[str, list[tuple[Path, int]]]:
    """Which font faces draw which character, from each font's character map.

    Args:
        files: font files (one face each).

    Returns:
        ``{character: [(font file, code point to render), ...]}`` with one entry per face that really has the
        glyph. The code point differs from the character only in TeX-encoded fonts (see the module docstring).
    """
    from fontTools import agl
    from fontTools.ttLib import TTFont

    coverage: dict[str, list[tuple[Path, int]]] = {}
    for path in files:
        with TTFont(str(path), lazy=True) as font:
            cmap = font.getBestCmap() or {}
        decoded = {cp: agl.toUnicode(glyph) for cp, glyph in cmap.items()}
        named = [(cp, u) for cp, u in decoded.items() if len(u) == 1]
        agreement = sum(1 for cp, u in named if ord(u) == cp) / max(1, len(named))
        unicode_cmap = agreement >= _UNICODE_CMAP_AGREEMENT
        seen: set[str] = set()
        for cp in sorted(cmap):
            name = decoded[cp]
            if len(name) == 1 and not (unicode_cmap and unicodedata.category(name) == "Co"):
                char = name
            elif unicode_cmap and len(name) <= 1:
                # No usable name, or a legacy Adobe name that decodes into the private use area (DejaVu's
                # "dotlessj" at U+0237): a Unicode font's code point is the better witness.
                char = chr(cp)
            else:
                # An undecodable name in a TeX-encoded font (e.g. cmex10's "parenleftBigg"): the code point says
                # nothing about the shape, and a multi-character name is a ligature: neither is a class instance.
                continue
            if char in seen:  # several code points mapped to one glyph: one instance per face
                continue
            seen.add(char)
            coverage.setdefault(char, []).append((path, cp))
    return coverage


@dataclass(frozen=True)
class FontsData:
    """The rendered fonts data set, before splitting.

    Attributes:
        images: ``(classes, images_per_class, size, size)`` uint8, strokes bright.
        codepoints: ``(classes,)`` int32, the character of each class.
        faces: ``(classes,)`` int16, how many font faces draw each class.
        render_seconds: wall time of the rendering (0 when loaded from the cache).
        cache_path: where the arrays are cached, or None if they were not written.
    """

    images: np.ndarray
    codepoints: np.ndarray
    faces: np.ndarray
    render_seconds: float = 0.0
    cache_path: Path | None = None

    @property
    def characters(self) -> list[str]:
        return [chr(int(c)) for c in self.codepoints]


class _GlyphRenderer:
    """Renders glyphs with PIL at a fixed size, tightly cropped; one loaded ``FreeTypeFont`` per file."""

    def __init__(self, em_pixels: int) -> None:
        self.em_pixels = em_pixels
        self._fonts: dict[Path, object] = {}
        self._glyphs: dict[tuple[Path, int], object] = {}

    def glyph(self, path: Path, codepoint: int):
        """The glyph as a cropped PIL ``L`` image (ink 255), or None if the glyph draws nothing."""
        from PIL import Image, ImageDraw, ImageFont

        key = (path, codepoint)
        if key not in self._glyphs:
            font = self._fonts.get(path)
            if font is None:
                font = self._fonts[path] = ImageFont.truetype(str(path), self.em_pixels)
            char = chr(codepoint)
            left, top, right, bottom = font.getbbox(char)
            image = None
            if right > left and bottom > top:
                canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
                ImageDraw.Draw(canvas).text((2 - left, 2 - top), char, font=font, fill=255)
                box = canvas.getbbox()
                image = canvas.crop(box) if box else None
            self._glyphs[key] = image
        return self._glyphs[key]


def _place(glyph, size: int, distortion: np.ndarray | None) -> np.ndarray:
    """Fit a glyph into a ``size x size`` canvas (longer side at :data:`_FILL`) and apply an affine distortion.

    Args:
        glyph: PIL ``L`` image, tightly cropped.
        size: output side in pixels.
        distortion: ``(rotation radians, scale, shear, dx, dy)`` with the translation in fractions of the
            canvas, or None for the undistorted placement.
    """
    from PIL import Image

    big = size * _SUPERSAMPLE
    w, h = glyph.size
    fit = _FILL * big / max(w, h)
    if distortion is None:
        forward = np.eye(2) * fit
        dx = dy = 0.0
    else:
        angle, scale, shear, dx, dy = (float(v) for v in distortion)
        c, s = math.cos(angle), math.sin(angle)
        rotation = np.array([[c, -s], [s, c]])
        shear_m = np.array([[1.0, shear], [0.0, 1.0]])
        forward = rotation @ shear_m * (scale * fit)
    inverse = np.linalg.inv(forward)
    cx, cy = big / 2 + dx * big, big / 2 + dy * big
    # PIL's AFFINE maps each output pixel (x, y) to the input point (a x + b y + c, d x + e y + f).
    a, b = inverse[0]
    d, e = inverse[1]
    coeffs = (a, b, w / 2 - (a * cx + b * cy), d, e, h / 2 - (d * cx + e * cy))
    out = glyph.transform((big, big), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(out.reduce(_SUPERSAMPLE), dtype=np.uint8)


def _distortions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random small affine distortions ``(rotation, scale, shear, dx, dy)``."""
    return np.stack(
        [
            rng.uniform(-math.radians(12.0), math.radians(12.0), n),
            rng.uniform(0.85, 1.1, n),
            rng.uniform(-0.2, 0.2, n),
            rng.uniform(-0.06, 0.06, n),
            rng.uniform(-0.06, 0.06, n),
        ],
        axis=1,
    )


def _near_duplicates(prototypes: np.ndarray, order: Sequence[int], threshold: float) -> list[int]:
    """Greedy selection in ``order``: keep a class unless its prototype is within ``threshold`` of a kept one.

    Distance is the mean absolute difference. Candidates are found with a matrix product: for images in [0, 1],
    ``mean(d**2) <= mean(|d|)``, so every pair under the threshold also has a mean squared difference under it.
    """
    flat = prototypes.reshape(len(prototypes), -1).astype(np.float32)
    sq = (flat * flat).sum(1)
    n_pix = flat.shape[1]
    kept: list[int] = []
    kept_mask = np.zeros(len(flat), dtype=bool)
    # Blocks of rows keep the n x n float32 distance matrix out of memory for large character sets.
    block = 512
    candidates: dict[int, np.ndarray] = {}
    for lo in range(0, len(flat), block):
        hi = min(lo + block, len(flat))
        msd = (sq[lo:hi, None] + sq[None, :] - 2.0 * flat[lo:hi] @ flat.T) / n_pix
        for i in range(lo, hi):
            near = np.nonzero(msd[i - lo] < threshold)[0]
            candidates[i] = near[near != i]
    for i in order:
        near = candidates[i]
        near = near[kept_mask[near]]
        if len(near) and float(np.abs(flat[near] - flat[i]).mean(1).min()) < threshold:
            continue
        kept.append(i)
        kept_mask[i] = True
    return kept


def render_fonts(
    image_size: int = 28,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
    *,
    seed: int = 0,
    min_faces: int = DEFAULT_MIN_FACES,
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    characters: Iterable[str] | None = None,
    fonts: Sequence[str | Path] | None = None,
) -> FontsData:
    """Render the fonts data set (no caching; see :func:`load_fonts_data`).

    Args:
        image_size: output side in pixels.
        images_per_class: images per class; faces are used in turn (a random order per class, repeated) so each
            face appears about equally often.
        seed: seeds the distortions; class ``c`` uses ``numpy.random.default_rng([seed, ord(c)])``.
        min_faces: a character needs at least this many font faces that draw it.
        duplicate_threshold: see :data:`DEFAULT_DUPLICATE_THRESHOLD`.
        characters: restrict the classes to these characters (the same rules still apply).
        fonts: font files to use instead of matplotlib's (see :func:`list_font_files`).

    Returns:
        The classes sorted by code point.

    Raises:
        DataError: if the parameters are invalid or no character qualifies.
    """
    import time

    if image_size < 8:
        raise DataError(f"fonts: image_size={image_size} is too small; use at least 8 (28 is the default)")
    if seed < 0:
        raise DataError(f"fonts: seed must be non-negative, got {seed}")
    if images_per_class < 1 or min_faces < 1:
        raise DataError(f"fonts: images_per_class={images_per_class} and min_faces={min_faces} must be >= 1")
    start = time.perf_counter()
    files = [Path(f) for f in fonts] if fonts is not None else list_font_files()
    coverage = font_coverage(files)
    wanted = set(characters) if characters is not None else None
    renderer = _GlyphRenderer(em_pixels=max(64, 3 * image_size))

    chars: list[str] = []
    instances: list[list] = []  # per class: cropped glyph images of the faces that draw it
    for char in sorted(coverage):
        if (wanted is not None and char not in wanted) or not is_candidate_character(char):
            continue
        if len(coverage[char]) < min_faces:
            continue
        glyphs = [g for g in (renderer.glyph(p, cp) for p, cp in coverage[char]) if g is not None]
        if len(glyphs) >= min_faces:  # faces whose glyph is empty (e.g. a blank braille cell) do not count
            chars.append(char)
            instances.append(glyphs)
    if not chars:
        raise DataError(
            f"fonts: no character is drawn by at least min_faces={min_faces} of the {len(files)} font faces"
            + (" among the requested characters" if wanted is not None else "")
            + "; lower min_faces"
        )

    prototypes = np.stack(
        [np.mean([_place(g, image_size, None) for g in glyphs], axis=0) / 255.0 for glyphs in instances]
    )
    # Keep the best-covered characters first: among homoglyphs the class drawn by most faces survives
    # (ties: the lower code point, so Latin wins over Greek over Cyrillic).
    order = sorted(range(len(chars)), key=lambda i: (-len(instances[i]), ord(chars[i])))
    kept = sorted(_near_duplicates(prototypes, order, duplicate_threshold))

    images = np.empty((len(kept), images_per_class, image_size, image_size), dtype=np.uint8)
    for row, i in enumerate(kept):
        glyphs = instances[i]
        rng = np.random.default_rng([seed, ord(chars[i])])
        rounds = -(-images_per_class // len(glyphs))
        faces = np.concatenate([rng.permutation(len(glyphs)) for _ in range(rounds)])[:images_per_class]
        for j, (face, distortion) in enumerate(zip(faces, _distortions(rng, images_per_class))):
            images[row, j] = _place(glyphs[int(face)], image_size, distortion)
    return FontsData(
        images=images,
        codepoints=np.array([ord(chars[i]) for i in kept], dtype=np.int32),
        faces=np.array([len(instances[i]) for i in kept], dtype=np.int16),
        render_seconds=time.perf_counter() - start,
    )


def cache_dir() -> Path:
    """The user cache folder: ``$CML_CACHE``, else ``$XDG_CACHE_HOME/cml``, else ``~/.cache/cml``."""
    if os.environ.get("CML_CACHE"):
        return Path(os.environ["CML_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "cml"
    return Path.home() / ".cache" / "cml"


def _cache_key(params: dict, files: Sequence[Path]) -> str:
    from PIL import __version__ as pil_version
    from PIL import features

    fingerprint = {
        "version": FONTS_VERSION,
        "params": params,
        # Size and content of each font: a matplotlib upgrade that changes a font invalidates the cache.
        "fonts": [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files],
        "pillow": pil_version,
        "freetype": features.version("freetype2"),
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:20]


def load_fonts_data(
    image_size: int = 28,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
    *,
    seed: int = 0,
    min_faces: int = DEFAULT_MIN_FACES,
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    cache: str | Path | None = None,
) -> FontsData:
    """The fonts data set from the cache, rendering and caching it on a miss.

    Args:
        image_size, images_per_class, seed, min_faces, duplicate_threshold: see :func:`render_fonts`.
        cache: cache folder; default :func:`cache_dir`.

    Returns:
        The data; ``cache_path`` is None when the cache folder could not be written (a warning says why).
    """
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    if cache is not None and not folder.is_dir():
        # A cache folder named by the user is made, but not its parents: a mistyped path must not grow a tree of
        # folders (at the root, for /nonexistent/cache) after minutes of rendering.
        if folder.exists():
            raise DataError(f"fonts cache --data {folder} is a file; give a folder (or leave --data out for the "
                            f"default cache, {cache_dir()})")
        if not folder.parent.is_dir():
            raise DataError(f"fonts cache --data {folder}: its parent folder {folder.parent} does not exist; give "
                            f"an existing folder or one inside one (or leave --data out for the default cache, "
                            f"{cache_dir()})")
    files = list_font_files()
    params = dict(image_size=image_size, images_per_class=images_per_class, seed=seed, min_faces=min_faces,
                  duplicate_threshold=duplicate_threshold)
    path = folder / f"fonts-v{FONTS_VERSION}-{_cache_key(params, files)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return FontsData(images=z["images"], codepoints=z["codepoints"], faces=z["faces"], cache_path=path)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            # A truncated or foreign file under our name: render again and replace it.
            warnings.warn(f"fonts cache {path} is unreadable ({exc}); rendering again", stacklevel=2)
    # Rendering takes seconds at 28 px and grows with the pixels (and the em it renders at): say so before, on
    # stderr, rather than sit silent while it runs.
    print(f"fonts: rendering the data set at {image_size}x{image_size} px, {images_per_class} images per class, "
          f"once (it is not in the cache {folder} yet); this takes longer the larger the images", file=sys.stderr,
          flush=True)
    data = render_fonts(image_size, images_per_class, seed=seed, min_faces=min_faces,
                        duplicate_threshold=duplicate_threshold)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=data.images, codepoints=data.codepoints, faces=data.faces)
        # Write to a temporary file in the same folder, then rename: a reader never sees a half-written cache.
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not write the fonts cache to {folder} ({exc}); set CML_CACHE to a writable folder "
                      "to avoid rendering again next time", stacklevel=2)
        return data
    return FontsData(data.images, data.codepoints, data.faces, data.render_seconds, path)


def class_name(char: str) -> str:
    """``"U+0041 LATIN CAPITAL LETTER A"``."""
    return f"U+{ord(char):04X} {unicodedata.name(char, '?')}"


def load_fonts(
    root: str | Path | None,
    image_size: int = 28,
    *,
    seed: int = 0,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
    min_faces: int = DEFAULT_MIN_FACES,
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
    val_families: Sequence[str] = VAL_FAMILIES,
    test_families: Sequence[str] = TEST_FAMILIES,
    min_split_classes: int = 20,
) -> Splits:
    """The fonts data set as train/val/test splits by script family.

    Args:
        root: cache folder (None: :func:`cache_dir`); the data set itself needs no files.
        image_size: output side in pixels (28 as Omniglot's usual size).
        seed: distortion seed; the split does not depend on it.
        images_per_class, min_faces, duplicate_threshold: see :func:`render_fonts`.
        val_families, test_families: script families (see :func:`unicode_block`) of the val and test splits;
            all other families are training data.
        min_split_classes: each of val and test must get at least this many classes.

    Raises:
        DataError: if a split ends up with fewer than ``min_split_classes`` classes.
    """
    data = load_fonts_data(image_size, images_per_class, seed=seed, min_faces=min_faces,
                           duplicate_threshold=duplicate_threshold, cache=root)
    chars = data.characters
    families = [unicode_block(c)[1] for c in chars]
    overlap = set(val_families) & set(test_families)
    if overlap:
        raise DataError(f"fonts: families {sorted(overlap)} are in both val_families and test_families")
    assignment = {f: "train" for f in families}
    assignment.update({f: "val" for f in val_families})
    assignment.update({f: "test" for f in test_families})
    source = f"fonts data set ({data.cache_path or 'not cached'})"
    pools = {}
    detail = []
    for split in ("train", "val", "test"):
        rows = [i for i, f in enumerate(families) if assignment[f] == split]
        if len(rows) < min_split_classes:
            raise DataError(
                f"fonts: the {split} split has {len(rows)} classes, fewer than {min_split_classes}; lower "
                f"min_faces (now {min_faces}) or choose other val_families/test_families"
            )
        pools[split] = ClassPool(
            [class_name(chars[i]) for i in rows],
            [(lambda i=i: data.images[i]) for i in rows],
            source=f"{source} {split}",
        )
        fams = sorted({families[i] for i in rows})
        detail.append(f"{split}: {len(rows)} classes from {', '.join(fams)}")
    description = (
        f"fonts: {len(chars)} characters drawn by >= {min_faces} of matplotlib's font faces, "
        f"{images_per_class} distorted renderings each at {image_size}x{image_size} (seed {seed}); split by "
        f"script family: " + "; ".join(detail)
    )
    return Splits(pools["train"], pools["val"], pools["test"], description)
