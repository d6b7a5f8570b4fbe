"""The film viewer (issue 26): window / level, heatmaps that leave low values untouched, the
colour bar, native pixels in the viewer's data, the overlay download's legend strip and PNG text."""
from __future__ import annotations

import base64
import struct
import zlib

import cv2
import numpy as np
import pytest

from cxrlib.explain.overlay import COLOUR_BAR_TITLE, colormap_lut, heat_layer, legend_strip, overlay
from cxrlib.explain.png import to_png
from cxrlib.viz.viewer import LAYER_SIDE, WINDOW_PRESETS, viewer_data, window_level


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


def _decode(uri: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8),
                         cv2.IMREAD_UNCHANGED)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def test_viewer_data_has_the_colour_bar_native_pixels_and_transparent_low_values():
    film = _film(3000)
    heat = _blob()
    data = viewer_data(film, [{"title": "Original"}, {"title": "Grad-CAM<br>40% in the lungs",
                                                     "heatmap": heat},
                              {"title": "Score-CAM", "heatmap": heat[::-1],
                               "box": (100, 200, 2900, 2800)}], threshold=0.25, alpha=0.5)
    np.testing.assert_array_equal(_decode(data["film"]), film)  # every native pixel, the 1-px line
    assert (data["width"], data["height"]) == (3000, 3000)
    first, second, third = data["panels"]
    assert first == {"title": ["Original"]}  # the film alone
    assert second["title"] == ["Grad-CAM", "40% in the lungs"]
    assert second["box"] == [0, 0, 3000, 3000] and third["box"] == [100, 200, 2900, 2800]
    assert data["bar"]["title"] == COLOUR_BAR_TITLE and data["bar"]["threshold"] == 0.25
    lut = colormap_lut("inferno")[:, 0]
    assert data["bar"]["colours"][0] == "rgb({},{},{})".format(*lut[0])
    assert data["bar"]["colours"][-1] == "rgb({},{},{})".format(*lut[255])
    layer = _decode(second["layer"])
    assert layer.shape == (LAYER_SIDE, LAYER_SIDE, 4)
    stretched = cv2.resize(np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8),
                           (LAYER_SIDE, LAYER_SIDE), interpolation=cv2.INTER_LINEAR)
    low, high = stretched < 63, stretched > 65  # round(0.25 * 255) = 64, one level either side
    assert low.mean() > 0.5 and high.any()
    assert (layer[..., 3][low] == 0).all()  # not drawn: the film shows through unchanged
    assert (layer[..., 3][high] == 128).all()  # alpha 0.5
    colour = lut[stretched[high]].astype(int)  # the colour map's own colour at the value
    assert np.abs(layer[..., :3][high].astype(int) - colour).max() <= 12  # jet-like steps aside
    # the third covers its box (2800 x 2600 px): its longest side is the layer's
    assert _decode(third["layer"]).shape == (round(2600 * LAYER_SIDE / 2800), LAYER_SIDE, 4)


def test_the_viewer_sends_the_heatmap_as_one_byte_a_cell():
    """The hover readout's values: a 224 x 224 map in 50 KB (plotly's float32 map was 200 KB),
    equal to the map to within half a grey level."""
    heat = _blob(224)
    panel = viewer_data(_film(64), [{"title": "CAM", "heatmap": heat}])["panels"][0]
    raw = base64.b64decode(panel["heat"]["values"])
    assert len(raw) == heat.size and (panel["heat"]["w"], panel["heat"]["h"]) == (224, 224)
    sent = np.frombuffer(raw, np.uint8).reshape(heat.shape) / 255.0
    np.testing.assert_allclose(sent, heat, atol=0.5 / 255 + 1e-9)


def test_the_layer_over_the_film_is_the_overlay():
    """What the browser composites (``a * colour + (1 - a) * film``) is what ``overlay`` blends
    into the film, at the layer's size."""
    film = _film(256)
    heat = _blob()
    layer = heat_layer(heat, (256, 256), alpha=0.4, colormap="turbo", threshold=0.3)
    a = layer[..., 3:].astype(float) / 255
    composite = a * layer[..., :3] + (1 - a) * np.repeat(film[..., None], 3, axis=2)
    expected = overlay(film, heat, alpha=0.4, colormap="turbo", threshold=0.3).astype(float)
    assert np.abs(composite - expected).max() <= 1.5  # alpha in 1/255 steps, rounding
    with pytest.raises(ValueError):
        heat_layer(heat, (8, 8), threshold=1.0)


def test_the_contour_layer_holds_the_lines_alone():
    heat = _blob(64)
    layer = heat_layer(heat, (512, 512), alpha=1.0, colormap="inferno", contour=True)
    drawn = layer[..., 3] > 0
    assert 0.01 < drawn.mean() < 0.25  # lines, not a filled map
    assert cv2.erode(drawn.astype(np.uint8), np.ones((3, 3), np.uint8)).any()  # at least 3 px wide
    stretched = cv2.resize(np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8), (512, 512),
                           interpolation=cv2.INTER_LINEAR)
    far = cv2.dilate(drawn.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert (np.abs(stretched[~far].astype(int) - 51).min() <= 3)  # a line near the 0.2 level
    lut = colormap_lut("inferno")[:, 0]
    solid = layer[..., 3] == 255
    colours = {tuple(c) for c in layer[..., :3][solid]}
    assert colours <= {tuple(int(v) for v in lut[round(level * 255)]) for level in (0.2, 0.4, 0.6, 0.8)}


def test_an_rgba_png_keeps_its_alpha():
    """The bug: ``to_png`` turned RGBA into BGR, so a heat layer lost its transparency and hid
    the film."""
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[1, 2, 3], rgba[3, 4] = 200, 77, (1, 2, 3, 255)
    np.testing.assert_array_equal(_decode("data:," + base64.b64encode(to_png(rgba)).decode()), rgba)


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


def test_contour_lines_below_the_threshold_are_not_drawn():
    """The helper's hunt: at threshold 0.55 the contour mode still drew its 20 % and 40 % lines,
    while the page said evidence below 55 % is not drawn (in the viewer and the download)."""
    heat = _blob(64)
    lut = colormap_lut("inferno")[:, 0]
    kept = {tuple(int(v) for v in lut[round(level * 255)]) for level in (0.6, 0.8)}
    layer = heat_layer(heat, (512, 512), alpha=1.0, colormap="inferno", contour=True,
                       threshold=0.55)
    assert {tuple(c) for c in layer[..., :3][layer[..., 3] == 255]} == kept
    film = np.full((512, 512), 128, np.uint8)
    drawn = overlay(film, heat, alpha=1.0, colormap="inferno", contour=True, threshold=0.55)
    coloured = {tuple(c) for c in drawn.reshape(-1, 3)} - {(128, 128, 128)}
    assert kept <= coloured
    low = {tuple(int(v) for v in lut[round(level * 255)]) for level in (0.2, 0.4)}
    assert not low & coloured


def test_a_strip_films_layer_keeps_every_column_of_its_map():
    """The helper's hunt: a 40 x 20000 px film's layer was 2 x 512 px, so a row of its 224-cell
    map (evidence from 9 % to 100 %) showed as two colours. The layer has at least one pixel per
    map cell on each side."""
    heat = np.tile(np.linspace(0.0, 1.0, 224, dtype=np.float32), (224, 1))  # varies across
    panel = viewer_data(np.zeros((20000, 40), np.uint8), [{"title": "CAM", "heatmap": heat}],
                        threshold=0.0)["panels"][0]
    layer = _decode(panel["layer"])
    assert layer.shape == (LAYER_SIDE, 224, 4)
    lut = colormap_lut("inferno")[:, 0]
    row = layer[LAYER_SIDE // 2, :, :3].astype(int)
    assert np.abs(row - lut[np.round(heat[0] * 255).astype(int)]).max() <= 12  # every column
