"""The film viewer (issue 26): window / level, heatmaps that leave low values untouched, the
colour bar, native pixels in the figure, the overlay download's legend strip and PNG text."""
from __future__ import annotations

import base64
import struct
import zlib

import cv2
import numpy as np
import pytest

from cxrlib.explain.overlay import COLOUR_BAR_TITLE, legend_strip, overlay, to_png
from cxrlib.viz.viewer import WINDOW_PRESETS, viewer_figure, window_level


def _film(side: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    film = rng.integers(60, 200, (side, side)).astype(np.uint8)
    film[:, side // 3] = 255  # a one-pixel-wide line
    return film


def _blob(size: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - size * 0.7) ** 2 + (xx - size * 0.3) ** 2) / (2 * (size / 8) ** 2))


def test_window_level_by_hand():
    grey = np.arange(256, dtype=np.uint8)
    out = window_level(grey, centre=100, width=50)
    assert out[75] == 0 and out[125] == 255 and out[0] == 0 and out[255] == 255
    assert out[100] == round((100 - 75) / 50 * 255)  # 127.5 rounds to 128 (half to even: 128)
    assert np.all(np.diff(out.astype(int)) >= 0)
    inverted = window_level(grey, centre=100, width=50, invert=True)
    np.testing.assert_array_equal(inverted.astype(int), 255 - out.astype(int))
    np.testing.assert_array_equal(window_level(grey, *WINDOW_PRESETS["Full range"]),
                                  np.round(np.arange(256) * 255 / 256 + 0.5 * 255 / 256).astype(np.uint8))
    with pytest.raises(ValueError):
        window_level(grey, 100, 0)


def test_low_heatmap_values_leave_the_film_pixels_unchanged():
    film = _film()
    heat = _blob()
    out = overlay(film, heat, alpha=0.5, colormap="inferno", threshold=0.3)
    stretched = cv2.resize(np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8), film.shape[::-1],
                           interpolation=cv2.INTER_LINEAR)
    low, high = stretched < round(0.3 * 255), stretched >= round(0.3 * 255) + 10
    assert low.mean() > 0.5 and high.any()
    grey = np.repeat(film[..., None], 3, axis=2)
    np.testing.assert_array_equal(out[low], grey[low])  # untouched, exactly
    assert np.abs(out[high].astype(int) - grey[high]).sum(axis=1).min() > 0  # tinted
    everything = overlay(film, heat, alpha=0.5, colormap="inferno")  # threshold 0: all tinted
    assert (everything[low] != grey[low]).any()


def test_viewer_figure_has_the_colour_bar_native_pixels_and_shared_axes():
    film = _film(3000)
    heat = _blob()
    fig = viewer_figure(film, [{"title": "Original"}, {"title": "Grad-CAM", "heatmap": heat},
                               {"title": "Score-CAM", "heatmap": heat[::-1]}], threshold=0.25)
    images = [t for t in fig.data if t.type == "image"]
    maps = [t for t in fig.data if t.type == "heatmap"]
    assert len(images) == 3 and len(maps) == 2
    assert maps[0].colorbar.title.text == COLOUR_BAR_TITLE and maps[0].showscale
    assert not maps[1].showscale  # one colour bar for the shared scale
    assert np.isnan(np.asarray(maps[0].z, float)[heat < 0.25]).all()  # transparent below
    assert not np.isnan(np.asarray(maps[0].z, float)[heat >= 0.25]).any()
    png = base64.b64decode(images[0].source.split(",", 1)[1])
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(decoded, film)  # every native pixel, the 1-px line included
    assert maps[0].dx * heat.shape[1] == pytest.approx(3000)  # stretched over the whole film
    layout = fig.layout
    assert layout.xaxis2.matches == "x" and layout.yaxis3.matches == "y"  # zoom together


def test_the_heatmap_goes_to_the_browser_as_float32():
    """What Streamlit sends (``plotly.io.to_json``): each heatmap cell in 4 bytes, not 8 (a
    224x224 map was 0.53 MB of each Explain rerun's 1.0 MB), equal to the map where shown and
    NaN (transparent) below the threshold."""
    import json

    import plotly.io

    heat = _blob(224)
    fig = viewer_figure(_film(64), [{"title": "Original"}, {"title": "CAM", "heatmap": heat}],
                        threshold=0.25)
    z = next(t for t in json.loads(plotly.io.to_json(fig, validate=False))["data"]
             if t["type"] == "heatmap")["z"]
    assert z["dtype"] == "f4"
    raw = base64.b64decode(z["bdata"])
    assert len(raw) == 4 * heat.size
    sent = np.frombuffer(raw, "<f4").reshape(heat.shape)
    shown = heat >= 0.25
    np.testing.assert_allclose(sent[shown], heat[shown], rtol=1e-6)
    assert np.isnan(sent[~shown]).all()


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_the_downloaded_overlay_carries_a_legend_strip_and_png_text():
    film = _film(400)
    image = overlay(film, _blob(), alpha=0.5, colormap="inferno", threshold=0.2)
    lines = ["Grad-CAM on the last block", "class COVID-19, model score 0.91", "run 1a2b3c4d",
             "research use only - not for diagnosis"]
    strip = legend_strip(image, lines, "inferno", 0.2)
    assert strip.shape[0] > image.shape[0] and strip.shape[1] == image.shape[1]
    np.testing.assert_array_equal(strip[:image.shape[0]], image)
    assert strip[image.shape[0]:].std() > 5  # text and colour bar drawn
    meta = {"Method": "Grad-CAM", "Run": "1a2b3c4d", "Disclaimer": lines[-1]}
    data = to_png(strip, text=meta)
    texts = dict(body.split(b"\0", 1) for kind, body in _png_chunks(data) if kind == b"tEXt")
    assert {k.decode(): v.decode() for k, v in texts.items()} == meta
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(decoded, strip)
