"""Smooth blending of overlapping tile predictions (cosine taper), streamed row by row.

Neighbouring model inputs overlap by ``overlap = 2 * context`` pixels. Each input's class
probabilities are weighted by a separable window that is 1 in the middle and falls to 0
at the input's edges along a half-Hann (cosine-squared) ramp ``2 * context`` pixels long:

    ramp[j] = sin^2(pi * (j + 0.5) / (4 * context)),  j = 0 .. 2 * context - 1

Inputs step by ``tile`` pixels, so where two inputs overlap one ramps down exactly where
the other ramps up, and because ``sin^2 + cos^2 = 1`` their weights sum to 1 (a partition
of unity when ``tile >= 2 * context``). The weighted sums are divided by the summed
weights (which also covers scene borders, where the mirrored context has no neighbour,
and tiles smaller than ``2 * context``, where three inputs overlap), then arg-maxed.
A pixel is never decided by a prediction made at the very edge of a model's input: its
weight there is ~0. There are no seams, because nothing switches abruptly between tiles.

:class:`BlendAccumulator` holds the weighted sums of the ``tile + overlap`` scene rows
that the current tile row's inputs cover; when the row is done, its first ``tile`` rows
are final (the next row's inputs start below them), are reduced to uint8 and handed out,
and the remaining ``overlap`` rows are carried over. The sums are uint16 fixed point
(``round(w * p * scale)``, ``scale`` ~60000 where the weights sum to 1: a resolution of
1.7e-5, exact and order-free additions) rather than float32: memory is ``2 x K x (tile +
overlap) x width`` bytes, independent of the scene's height (62 MiB for 11 classes, the
default 512/192 and a 4000 px wide scene).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from senland_geo.classes import NODATA_CODE


class Cell(Protocol):
    """A tile core's top-left pixel in the scene (``predict.Window`` is one)."""

    row: int
    col: int


def taper_weights(size: int, context: int, margin: int | None = None) -> np.ndarray:
    """1-D blending weights of a model input of ``size`` pixels.

    Args:
        size: Input side in pixels (``tile + 2 * context``).
        context: Context pixels on each side; neighbouring inputs overlap by ``2 * context``.
        margin: Pixels at each edge whose predictions get weight 0 (default
            ``context // 2``): the ramp runs from ``margin`` to ``2 * context - margin``.

    Returns:
        ``(size,)`` float32 weights in ``[0, 1]``: 0 for ``margin`` pixels, a half-Hann
        ramp, 1 in the middle, and the mirror image at the other end (where the ramps of
        a short input would cross, the smaller of the two).
    """
    margin = context // 2 if margin is None else margin
    weights = np.ones(size, dtype=np.float64)
    if context > 0:
        length = 2 * context - 2 * margin  # the ramp's length
        j = np.arange(2 * context, dtype=np.float64)
        ramp = np.sin(np.pi * np.clip(j - margin + 0.5, 0, length) / (2 * length)) ** 2
        ramp[j < margin] = 0.0
        n = min(2 * context, size)
        weights[:n] = np.minimum(weights[:n], ramp[:n])
        weights[size - n :] = np.minimum(weights[size - n :], ramp[::-1][2 * context - n :])
    return weights.astype(np.float32)


#: Largest fixed-point sum of one class at one pixel (uint16, with room for rounding).
FIXED_POINT_MAX = 60000


def max_weight_sum(ramp: np.ndarray, step: int) -> float:
    """Largest sum of 1-D weights ``ramp`` over inputs placed every ``step`` pixels."""
    size = len(ramp)
    total = np.zeros(size + 2 * size, dtype=np.float64)
    for start in range(0, 2 * size, step):
        total[start : start + size] += ramp
    return float(total[size : 2 * size].max())


class BlendAccumulator:
    """Weighted class probabilities of one tile row's inputs, released row band by row band.

    Args:
        height: Scene rows.
        width: Scene columns.
        num_classes: ``K``.
        tile: Core side (inputs step by it).
        context: Context pixels on each side of a core (input side ``tile + 2 context``).
        lut: Class index -> class code (uint8).
        probabilities: Also release quantized probabilities.
        prob_scale: Probability quantization: ``round(p * prob_scale)``.
        prob_nodata: Quantized value of a pixel with no valid input.
    """

    def __init__(
        self,
        height: int,
        width: int,
        num_classes: int,
        tile: int,
        context: int,
        lut: np.ndarray,
        probabilities: bool,
        prob_scale: int,
        prob_nodata: int,
    ) -> None:
        self.height, self.width = height, width
        self.tile, self.context = tile, context
        self.lut = lut
        self.probabilities = probabilities
        self.prob_scale, self.prob_nodata = prob_scale, prob_nodata
        rows = tile + 2 * context
        ramp = taper_weights(rows, context)
        self.window = np.outer(ramp, ramp)
        # Fixed point: the largest sum of weights any pixel can get (1 where the ramps form
        # a partition of unity; more for tiles smaller than the context) times the scale,
        # plus 0.5 of rounding per input, stays below 2^16.
        reach = max_weight_sum(ramp, tile) ** 2
        self.scale = np.float32(FIXED_POINT_MAX / reach)
        self.scaled_window = (self.window * self.scale).astype(np.float32)
        self.sums = np.zeros((num_classes, rows, width), dtype=np.uint16)
        self.weights = np.zeros((rows, width), dtype=np.float32)
        self.valid = np.zeros((rows, width), dtype=bool)
        self.top = -context  # scene row of the buffers' first row
        self.any_valid = False

    def add(self, w: Cell, probs: np.ndarray, valid: np.ndarray) -> None:
        """Add one input's prediction (modified in place: weighted).

        Args:
            w: The core's top-left pixel (its input starts ``context`` above and left).
            probs: ``(K, tile + 2 context, tile + 2 context)`` float32 probabilities.
            valid: ``(tile, tile)`` valid-input mask of the core (False outside the scene).
        """
        t, c = self.tile, self.context
        row, col = w.row, w.col
        size = t + 2 * c
        r0, r1 = max(row - c, 0), min(row - c + size, self.height)
        c0, c1 = max(col - c, 0), min(col - c + size, self.width)
        pr = slice(r0 - (row - c), r1 - (row - c))
        pc = slice(c0 - (col - c), c1 - (col - c))
        part = probs[:, pr, pc]
        part *= self.scaled_window[pr, pc]
        part += 0.5  # the uint16 cast below truncates: round half up
        rows = slice(r0 - self.top, r1 - self.top)
        target = self.sums[:, rows, c0:c1]
        np.add(target, part, out=target, casting="unsafe")
        self.weights[rows, c0:c1] += self.window[pr, pc]
        h, w = min(t, self.height - row), min(t, self.width - col)
        core = valid[:h, :w]
        self.valid[row - self.top : row - self.top + h, col : col + w] = core
        self.any_valid |= bool(core.any())

    def end_row(self, last: bool) -> tuple[int, np.ndarray, np.ndarray | None]:
        """Finish the current tile row: reduce its final rows and carry the rest over.

        Args:
            last: This was the scene's last tile row (every remaining row is final).

        Returns:
            ``(row, codes, probs)``: the first scene row released, ``(n, width)`` uint8
            class codes (nodata where no valid input) and, if requested, ``(K, n, width)``
            uint8 quantized probabilities; ``n`` may be 0 (tiles smaller than the context).
        """
        start = max(0, -self.top)  # buffer rows above the scene are never released
        stop = (self.height - self.top) if last else self.tile
        stop = max(start, min(stop, self.height - self.top))
        sums = self.sums[:, start:stop]
        ok = self.valid[start:stop]
        codes = self.lut[sums.argmax(0)]
        codes[~ok] = NODATA_CODE
        probs = None
        if self.probabilities:
            p = sums / (np.maximum(self.weights[start:stop], 1e-12) * self.scale)
            probs = np.rint(p * self.prob_scale).astype(np.uint8)
            probs[:, ~ok] = self.prob_nodata
        first = self.top + start
        if not last:
            self._shift()
        return first, codes, probs

    def _shift(self) -> None:
        """Move the buffers down the scene by one tile row (keep the overlap rows)."""
        t = self.tile
        keep = self.sums.shape[1] - t
        for buf in (self.sums[:], self.weights[None], self.valid[None]):
            buf[:, :keep] = buf[:, t:]  # numpy buffers the copy itself if the ranges overlap
            buf[:, keep:] = 0
        self.top += t
