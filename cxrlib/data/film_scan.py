"""One pass over a dataset's films: perceptual hashes, thumbnails and non-clinical properties.

Both the duplicate finder and the metadata-only baseline need every film decoded once; this
module does that pass and caches its result under ``paths.cache_dir("audit")``, keyed by the
dataset fingerprint (or, without one, by each file's path, size and modification time), so a
second audit of the same data reads a few megabytes instead of decoding 1800 films again.

Hashes (64-bit integers, compared by Hamming distance):

* **pHash**: the film squashed to 32 x 32 grey, its 2-D DCT, the 8 x 8 lowest frequencies
  without the DC term, each bit = coefficient above their median. Low DCT frequencies survive
  rescaling (including a stretch to a square), JPEG re-encoding and mild contrast changes.
* **dHash**: the film squashed to 9 x 8, each bit = "this pixel is brighter than its left
  neighbour". A second, differently built hash catches pairs one of them misses.
* **window hashes**: the pHash of 24 sub-windows: along each axis the window keeps all, 90%
  (at the start, centre or end) or the central 80% of the side. A copy cropped by about 10%
  hashes like one of the original's windows, so cropped copies reach the candidate list too.

All of them are computed from the film squashed to 128 x 128 (INTER_AREA): hashing is then a
few tiny resizes per film whatever its resolution.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from cxrlib.core.paths import cache_dir
from cxrlib.data.imageio import ImageReadError, jpeg_quality, read_film
from cxrlib.preprocessing.steps import to_grey

SIGNATURE_VERSION = 3  # 3: films that fail to decode are skipped (corrupt JPEG data included)
WORK_SIZE = THUMB_SIZE = 128
# Per axis: (share of the side kept, anchor in [0, 1]); a window is one choice per axis.
_AXIS_WINDOWS = ((1.0, 0.5), (0.9, 0.0), (0.9, 0.5), (0.9, 1.0), (0.8, 0.5))
WINDOWS: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = tuple(
    (wx, wy) for wx in _AXIS_WINDOWS for wy in _AXIS_WINDOWS if (wx, wy) != ((1.0, 0.5), (1.0, 0.5)))
"""(x window, y window) of the sub-windows whose pHash is kept for crop detection."""
PROPERTY_COLUMNS = ("file_bytes", "jpeg_quality", "mean", "std", "border_mean", "border_std",
                    "border_black", "border_white", "colour")


@dataclass
class FilmSignatures:
    """Per-film results of one decoding pass, rows in the manifest's order.

    Attributes:
        rel_paths: ``rel_path`` of each film (the manifest's order).
        phash: ``uint64 (N,)`` DCT perceptual hash of the whole film.
        dhash: ``uint64 (N,)`` difference hash of the whole film.
        window_phash: ``uint64 (N, len(WINDOWS))`` pHash of each sub-window.
        thumbs: ``uint8 (N, THUMB_SIZE, THUMB_SIZE)`` grey film squashed to a square.
        properties: one row per film with :data:`PROPERTY_COLUMNS` (see :func:`film_properties`).
        cache_hit: whether this came from the cache.
        skipped: films that could not be decoded, ``{"rel_path", "reason"}`` each. Their rows stay
            (so rows still match the manifest) with zero hashes and thumbnails and NaN properties;
            :meth:`readable` drops them.
    """

    rel_paths: list[str]
    phash: np.ndarray
    dhash: np.ndarray
    window_phash: np.ndarray
    thumbs: np.ndarray
    properties: pd.DataFrame
    cache_hit: bool = False
    skipped: list[dict] = field(default_factory=list)

    def readable(self) -> "FilmSignatures":
        """The signatures without the skipped films' rows (``rel_paths`` says which remain)."""
        if not self.skipped:
            return self
        bad = {s["rel_path"] for s in self.skipped}
        keep = np.array([p not in bad for p in self.rel_paths], bool)
        return FilmSignatures([p for p in self.rel_paths if p not in bad], self.phash[keep],
                              self.dhash[keep], self.window_phash[keep], self.thumbs[keep],
                              self.properties[keep].reset_index(drop=True), self.cache_hit)


def _bits_to_int(bits: np.ndarray) -> np.uint64:
    packed = np.packbits(bits.astype(np.uint8).ravel()[:64])
    return np.frombuffer(np.pad(packed, (0, 8 - packed.size)).tobytes(), ">u8")[0].astype(np.uint64)


def phash(grey: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of a grey image (63 bits used; see the module docstring)."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].ravel()[1:]
    return _bits_to_int(low > np.median(low))


def dhash(grey: np.ndarray) -> np.uint64:
    """64-bit difference hash of a grey image."""
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def window(grey: np.ndarray, wx: tuple[float, float], wy: tuple[float, float]) -> np.ndarray:
    """The sub-window keeping ``wx = (share, anchor)`` of the width and ``wy`` of the height."""
    h, w = grey.shape
    cw, ch = max(1, round(w * wx[0])), max(1, round(h * wy[0]))
    x0, y0 = round((w - cw) * wx[1]), round((h - ch) * wy[1])
    return grey[y0:y0 + ch, x0:x0 + cw]


def thumbnail(grey: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """The grey film squashed to ``size`` x ``size`` (INTER_AREA)."""
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hash arrays (broadcast)."""
    return np.bitwise_count(np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))).astype(np.int16)


def film_properties(grey: np.ndarray, path: str | os.PathLike | None = None,
                    rgb: np.ndarray | None = None) -> dict[str, float]:
    """Non-clinical properties of one film (nothing here looks at anatomy).

    Args:
        grey: the decoded grey film.
        path: the file, for its size and JPEG quality (``nan`` without it).
        rgb: the decoded film when stored in colour, for ``colour``.

    Returns:
        ``file_bytes``, ``jpeg_quality``, ``mean``/``std`` intensity, ``border_mean``/``border_std``
        of the outer frame (5% of each side), ``border_black``/``border_white`` (share of frame
        pixels <= 5 or >= 250), ``colour`` (mean |R-G| + |G-B| of a colour film, 0 for grey).
    """
    h, w = grey.shape
    by, bx = max(1, h // 20), max(1, w // 20)
    frame = np.concatenate([grey[:by].ravel(), grey[-by:].ravel(),
                            grey[by:-by, :bx].ravel(), grey[by:-by, -bx:].ravel()]).astype(np.float32)
    colour = 0.0
    if rgb is not None and rgb.ndim == 3 and rgb.shape[2] >= 3:
        c = rgb[::4, ::4, :3].astype(np.int16)
        colour = float(np.abs(c[..., 0] - c[..., 1]).mean() + np.abs(c[..., 1] - c[..., 2]).mean())
    return {
        "file_bytes": float(os.path.getsize(path)) if path is not None else float("nan"),
        "jpeg_quality": jpeg_quality(path) if path is not None else float("nan"),
        "mean": float(grey.mean()), "std": float(grey.std()),
        "border_mean": float(frame.mean()), "border_std": float(frame.std()),
        "border_black": float((frame <= 5).mean()), "border_white": float((frame >= 250).mean()),
        "colour": colour,
    }


def scan_films(manifest: pd.DataFrame, *, fingerprint: str | None = None, use_cache: bool = True,
               progress: Callable[[int, int], None] | None = None) -> FilmSignatures:
    """Decode every film of ``manifest`` once: hashes, thumbnails, properties (cached).

    Args:
        manifest: needs ``path`` and ``rel_path`` columns (a :class:`cxrlib.data.datasets.Dataset` manifest).
        fingerprint: the dataset fingerprint, the cache key; without it the key is built from each
            file's path, size and modification time.
        use_cache: read and write the cache under ``paths.cache_dir("audit")``.
        progress: ``progress(done, total)`` callback.

    Returns:
        The :class:`FilmSignatures`, rows in the manifest's order; films that cannot be decoded
        are listed in ``skipped`` with the reason, and never stop the pass.
    """
    paths = [str(p) for p in manifest["path"]]
    rel_paths = [str(p) for p in manifest["rel_path"]]
    key = _cache_key(paths, rel_paths, fingerprint)
    cache_file = cache_dir("audit") / f"signatures-{key}.npz"
    if use_cache and cache_file.exists():
        try:
            return _load(cache_file, rel_paths)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt
    n = len(paths)
    ph = np.zeros(n, np.uint64)
    dh = np.zeros(n, np.uint64)
    wh = np.zeros((n, len(WINDOWS)), np.uint64)
    thumbs = np.zeros((n, THUMB_SIZE, THUMB_SIZE), np.uint8)
    rows, skipped = [], []
    decoded: dict[tuple, int] = {}  # file identity -> its row: a hard link is decoded once
    for i, path in enumerate(paths):
        same = _same_file_as(path, decoded, i)
        if same is not None:
            ph[i], dh[i], wh[i], thumbs[i] = ph[same], dh[same], wh[same], thumbs[same]
            rows.append(dict(rows[same]))
            skipped += [{**s, "rel_path": rel_paths[i]} for s in skipped if s["rel_path"] == rel_paths[same]]
            if progress is not None:
                progress(i + 1, n)
            continue
        try:
            film = read_film(path).pixels
        except (ImageReadError, OSError) as exc:
            skipped.append({"rel_path": rel_paths[i],
                            "reason": getattr(exc, "reason", None) or exc.strerror or str(exc)})
            rows.append(dict.fromkeys(PROPERTY_COLUMNS, float("nan")))
            if progress is not None:
                progress(i + 1, n)
            continue
        grey = to_grey(film)
        work = thumbnail(grey, WORK_SIZE)
        ph[i], dh[i] = phash(work), dhash(work)
        wh[i] = [phash(window(work, wx, wy)) for wx, wy in WINDOWS]
        thumbs[i] = work
        rows.append(film_properties(grey, path, film if film.ndim == 3 else None))
        if progress is not None:
            progress(i + 1, n)
    props = pd.DataFrame(rows, columns=list(PROPERTY_COLUMNS))
    sig = FilmSignatures(rel_paths, ph, dh, wh, thumbs, props, skipped=skipped)
    if use_cache:
        _save(cache_file, sig)
    return sig


def _same_file_as(path: str, decoded: dict[tuple, int], row: int) -> int | None:
    """The earlier row that is the same file (same device, inode, size and modification time:
    a hard link or the same path twice), else None; ``row`` is remembered for this file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not st.st_ino:  # a file system without inode numbers: no way to tell
        return None
    first = decoded.setdefault((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), row)
    return first if first != row else None


def _cache_key(paths: list[str], rel_paths: list[str], fingerprint: str | None) -> str:
    h = hashlib.sha256(f"v{SIGNATURE_VERSION}|{WORK_SIZE}|{WINDOWS}".encode())
    if fingerprint:
        h.update(fingerprint.encode())
        h.update("\n".join(rel_paths).encode())
    else:
        for p in paths:
            st = Path(p).stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _save(target: Path, sig: FilmSignatures) -> None:
    from cxrlib.core.fsutil import atomic_path  # noqa: PLC0415

    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, rel_paths=np.array(sig.rel_paths, dtype=str), phash=sig.phash,
                     dhash=sig.dhash, window_phash=sig.window_phash, thumbs=sig.thumbs,
                     skipped_rel_paths=np.array([s["rel_path"] for s in sig.skipped], dtype=str),
                     skipped_reasons=np.array([s["reason"] for s in sig.skipped], dtype=str),
                     **{f"prop_{c}": sig.properties[c].to_numpy() for c in PROPERTY_COLUMNS})


def _load(source: Path, rel_paths: list[str]) -> FilmSignatures:
    with np.load(source) as z:
        if list(z["rel_paths"]) != rel_paths:
            raise ValueError("cache rows do not match the manifest")
        props = pd.DataFrame({c: z[f"prop_{c}"] for c in PROPERTY_COLUMNS})
        skipped = [{"rel_path": str(p), "reason": str(r)}
                   for p, r in zip(z["skipped_rel_paths"], z["skipped_reasons"])]
        return FilmSignatures(rel_paths, z["phash"], z["dhash"], z["window_phash"], z["thumbs"],
                              props, cache_hit=True, skipped=skipped)
