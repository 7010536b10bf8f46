"""Cosine-tapered blending of overlapping tile predictions (senland_geo.blend)."""

from __future__ import annotations

import numpy as np
import pytest

from senland_geo.blend import BlendAccumulator, taper_weights
from senland_geo.predict import plan_batches

LUT = np.array([10, 20, 30], dtype=np.uint8)


def test_taper_is_a_partition_of_unity_where_inputs_overlap():
    tile, context = 64, 16
    w = taper_weights(tile + 2 * context, context).astype(np.float64)
    assert (w[: context // 2] == 0).all()  # predictions with < context/2 px of context: unused
    assert w[context // 2] == pytest.approx(np.sin(np.pi * 0.5 / 32) ** 2)  # the ramp starts
    assert w[context] == pytest.approx(0.5, abs=0.05)  # half way at the core's border
    assert w[2 * context - context // 2 : tile + context // 2].min() == 1.0  # flat in the middle
    np.testing.assert_allclose(w, w[::-1])
    # Inputs step by `tile`: summed over a scene, every interior pixel weighs exactly 1.
    total = np.zeros(6 * tile + 2 * context)
    for k in range(6):
        total[k * tile : k * tile + tile + 2 * context] += w
    np.testing.assert_allclose(total[context:-context][context:-context], 1.0, atol=1e-6)


def test_taper_without_context_is_flat():
    np.testing.assert_array_equal(taper_weights(32, 0), np.ones(32, np.float32))


def _run(height, width, tile, context, predict, probabilities=True):
    """Blend ``predict(row, col) -> (K, S, S)`` over a scene; return codes, probs, rows seen."""
    acc = BlendAccumulator(height, width, 3, tile, context, LUT, probabilities, 254, 255)
    codes = np.full((height, width), 255, np.uint8)
    probs = np.full((3, height, width), 0, np.uint8)
    released = []
    batches = plan_batches(height, width, tile)
    for i, batch in enumerate(batches):
        for w in batch:
            acc.add(w, predict(w.row, w.col), np.ones((tile, tile), bool))
        if i + 1 == len(batches) or batches[i + 1][0].row != batch[0].row:
            row, c, p = acc.end_row(last=i + 1 == len(batches))
            released.extend(range(row, row + len(c)))
            codes[row : row + len(c)] = c
            probs[:, row : row + len(c)] = p
    return codes, probs, released


@pytest.mark.parametrize(("tile", "context"), [(64, 16), (32, 32), (32, 48), (64, 0)])
def test_every_row_is_released_once_and_constant_input_stays_constant(tile, context):
    height, width, size = 150, 97, tile + 2 * context
    p = np.array([0.2, 0.7, 0.1], np.float32)[:, None, None]
    constant = np.tile(p, (1, size, size))
    codes, probs, rows = _run(height, width, tile, context, lambda r, c: constant.copy())
    assert rows == list(range(height))  # in order, each once, edges included
    assert (codes == 20).all()
    # the blend is normalised by the summed weights, borders included
    np.testing.assert_array_equal(probs[:, 0, 0], [51, 178, 25])
    assert (probs == np.array([51, 178, 25], np.uint8)[:, None, None]).all()


def test_overlap_is_a_smooth_weighted_average_of_the_two_inputs():
    # Left inputs say class 0, right inputs class 2: across the vertical border between two
    # tiles, the averaged probability moves smoothly from one to the other; the middle is 50/50.
    tile, context = 64, 16
    size = tile + 2 * context

    def predict(row, col):
        k = 0 if col == 0 else 2
        out = np.zeros((3, size, size), np.float32)
        out[k] = 1.0
        return out

    codes, probs, _ = _run(64, 128, tile, context, predict)
    p0 = probs[0, 10].astype(int)
    assert (p0[: tile - context] == 254).all() and (p0[tile + context :] == 0).all()
    ramp = p0[tile - context : tile + context]
    assert (np.diff(ramp) <= 0).all() and ramp[0] > 240 and ramp[-1] < 14
    assert abs(int(p0[tile - 1]) + int(p0[tile]) - 254) <= 2  # symmetric about the border
    assert (codes[:, : tile - 1] == 10).all() and (codes[:, tile + 1 :] == 30).all()


def test_invalid_core_pixels_get_nodata():
    acc = BlendAccumulator(32, 32, 3, 32, 16, LUT, True, 254, 255)
    assert acc.sums.dtype == np.uint16 and acc.sums.shape == (3, 32 + 32, 32)  # one tile row
    valid = np.ones((32, 32), bool)
    valid[:5, :7] = False
    w = plan_batches(32, 32, 32)[0][0]
    acc.add(w, np.full((3, 64, 64), 1 / 3, np.float32), valid)
    row, codes, probs = acc.end_row(last=True)
    assert row == 0 and codes.shape == (32, 32)
    assert (codes[:5, :7] == 0).all() and (codes[5:] != 0).all()
    assert (probs[:, :5, :7] == 255).all() and (probs[:, 5:] == 85).all()
