"""Spatial splits of a training run: the validation block and blocked k-fold strips."""

from __future__ import annotations

from collections.abc import Sequence

from senland_geo.errors import UserError
from senland_geo.splits import Split, holdout_split
from senland_geo.train_config import Box


def validation_split(
    bounds: Sequence[float],
    res: float,
    *,
    side: str = "east",
    holdout_fraction: float = 1 / 3,
    val_fraction: float = 0.2,
    buffer_px: int = 16,
) -> tuple[Split, Split]:
    """Test block on ``side``, then a validation block carved from the training side.

    Layout (side east): ``train | buffer | validation | buffer | test``.

    Returns:
        ``(outer, inner)``: ``outer`` is training side vs test block; ``inner`` is the
        training boxes (``train``) vs the validation block (``test``).
    """
    outer = holdout_split(
        tuple(bounds), res, side=side, fraction=holdout_fraction, buffer_px=buffer_px
    )
    inner = holdout_split(
        outer.train[0], res, side=side, fraction=val_fraction, buffer_px=buffer_px
    )
    inner = Split(
        inner.train, inner.test, f"validation: {side} {val_fraction:.3f} of the training side"
    )
    return outer, inner


def blocked_folds(train_box: Box, res: float, k: int, *, buffer_px: int = 16) -> list[Split]:
    """Blocked k-fold over a training box: k strips across its longer side.

    Fold ``i`` validates on strip ``i``; its training boxes are the other strips minus a
    ``buffer_px`` gap on each side of the validation strip.

    Raises:
        UserError: ``k < 2`` or strips too narrow for the buffer.
    """
    if k < 2:
        raise UserError(f"k-fold needs folds >= 2, got {k}")
    minx, miny, maxx, maxy = train_box
    along_x = (maxx - minx) >= (maxy - miny)
    lo, hi = (minx, maxx) if along_x else (miny, maxy)
    width = round((hi - lo) / res / k) * res
    buf = buffer_px * res
    if width <= 2 * buf:
        raise UserError(
            f"{k} folds give {width / res:.0f} px strips, too narrow for a {buffer_px} px "
            "buffer; use fewer folds or a smaller buffer"
        )
    folds = []
    for i in range(k):
        a = lo + i * width
        b = hi if i == k - 1 else a + width
        parts = [(lo, a - buf), (b + buf, hi)]
        parts = [(p, q) for p, q in parts if q - p > 0]

        def box(p: float, q: float) -> Box:
            return (p, miny, q, maxy) if along_x else (minx, p, maxx, q)

        split = Split(
            tuple(box(p, q) for p, q in parts),
            (box(a, b),),
            f"blocked fold {i + 1}/{k}, {buffer_px} px buffer",
        )
        split.check_no_leakage()
        folds.append(split)
    return folds
