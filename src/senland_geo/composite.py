"""Exact cloudless median composites of uint16 cubes, chunk by chunk in integers.

The median of each pixel and band over a group of time steps, leaving out masked
observations (:func:`senland_geo.cube.valid_mask`) and band values of 0 (no data), is
computed on the uint16 values themselves: masked values become 65535 (they sort last),
the group is sorted along time (a min/max sorting network for short series), the valid
values are counted, and the middle one or two are gathered. Two middle values ``a, b``
give ``round_half_even((a + b) / 2)``, pixels with no valid value give 0: exactly what
``float32 .where(...).median("time").fillna(0).round().astype("uint16")`` gives (the mean
of two uint16 values is exact in float32), several times faster and in a quarter of the
memory. One task per spatial chunk (:func:`median_array`), so composites stay lazy and
run on any dask scheduler.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Series up to this length are sorted with a min/max network (odd-even transposition,
#: ``n (n - 1) / 2`` compare-exchanges of whole arrays); longer ones with ``np.sort``.
NETWORK_MAX = 12

_MASKED = np.uint16(65535)


def _sort_time(values: np.ndarray) -> np.ndarray:
    """Sort a ``(time, ...)`` uint16 array along time (in place for short series)."""
    n = values.shape[0]
    if n > NETWORK_MAX:
        return np.sort(values, axis=0)
    low = np.empty_like(values[0]) if n > 1 else None
    for round_ in range(n):
        for i in range(round_ % 2, n - 1, 2):
            np.minimum(values[i], values[i + 1], out=low)
            np.maximum(values[i], values[i + 1], out=values[i + 1])
            values[i] = low
    return values


def median_of(values: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Median over axis 0 of the nonzero ``values`` where ``use`` is True; 0 where none is.

    Args:
        values: ``(time, ...)`` uint16.
        use: Boolean, broadcastable to ``values``.

    Returns:
        uint16 array of ``values.shape[1:]``: the middle value, or the mean of the two
        middle values rounded half to even.
    """
    shifted = np.where(use, values, np.uint16(0))
    shifted -= np.uint16(1)  # wraps: unused -> 65535, 1..65535 -> 0..65534
    return _median_shifted(shifted)


def _median_shifted(shifted: np.ndarray) -> np.ndarray:
    """The median of ``shifted + 1`` over axis 0, leaving out the entries that are 65535.

    ``shifted`` (uint16, modified in place) holds every value used minus one, and 65535
    for the others (masked, or 0: no data), so those sort last and the used ones keep
    their order.
    """
    count = (shifted != _MASKED).sum(axis=0, dtype=np.uint16)
    ordered = _sort_time(shifted)
    lo = count.copy()
    np.subtract(lo, 1, out=lo, where=count > 0)
    lo >>= 1
    hi = count >> 1
    # gather ordered[lo], ordered[hi] per pixel as flat takes (faster than take_along_axis)
    plane = count.size
    flat = ordered.reshape(-1)
    offset = np.arange(plane, dtype=np.intp).reshape(count.shape)
    a = flat.take(lo.astype(np.intp) * plane + offset)
    b = flat.take(hi.astype(np.intp) * plane + offset)
    a += np.uint16(1)  # back to the values (entries at lo/hi are used ones: <= 65534)
    b += np.uint16(1)
    # round_half_even((a + b) / 2) without leaving uint16
    half = (a >> 1) + (b >> 1) + (a & b & 1)
    half += (a ^ b) & half & 1  # an odd total is x.5: round to the even neighbour
    half[count == 0] = 0
    return half


def median_block(
    block: np.ndarray,
    *,
    groups: Sequence[Sequence[int]],
    scl: int | None,
    invalid: Sequence[int],
) -> np.ndarray:
    """Median composites of one chunk ``(time, band, y, x)`` for each group of time steps.

    Args:
        block: uint16 chunk holding every time step and band.
        groups: Time indices of each output step (an empty group gives zeros).
        scl: Index of the SCL band in ``block`` (dropped from the output), or None.
        invalid: SCL values that mask an observation.

    Returns:
        ``(len(groups), bands, y, x)`` uint16, ``bands`` excluding SCL.
    """
    block = np.asarray(block, dtype=np.uint16)
    keep = [i for i in range(block.shape[1]) if i != scl]
    valid = block[:, keep[0]] != 0 if keep else np.zeros_like(block[:, 0], dtype=bool)
    for band in keep[1:]:
        valid |= block[:, band] != 0
    if scl is not None:
        clear = np.ones(65536, dtype=bool)
        clear[np.asarray(invalid, dtype=np.uint16)] = False
        valid &= clear[block[:, scl]]
    out = np.zeros((len(groups), len(keep)) + block.shape[2:], dtype=np.uint16)
    for g, index in enumerate(groups):
        if len(index) == 0:
            continue
        index = list(index)
        if len(index) == 1:  # the median of one value: the value where it is used
            for j, band in enumerate(keep):
                np.multiply(block[index[0], band], valid[index[0]], out=out[g, j])
            continue
        use = valid[index]
        for j, band in enumerate(keep):  # band by band: small temporaries, cache-friendly
            shifted = block[index, band]  # a copy
            shifted *= use  # masked observations -> 0
            shifted -= np.uint16(1)  # 0 (masked or no data) -> 65535, the rest minus one
            out[g, j] = _median_shifted(shifted)
    return out


def median_array(
    data: object,
    *,
    groups: Sequence[Sequence[int]],
    scl: int | None,
    invalid: Sequence[int],
) -> object:
    """Lazy :func:`median_block` over a dask array ``(time, band, y, x)``, one task per chunk.

    The array is rechunked to whole time and band first (a no-op for cubes read by
    :mod:`senland_geo.aligned_read`). A numpy array is computed at once.

    Returns:
        A dask (or numpy) uint16 array ``(len(groups), bands, y, x)``.
    """
    import dask.array as da

    groups = tuple(tuple(int(i) for i in g) for g in groups)
    kwargs = {"groups": groups, "scl": scl, "invalid": tuple(int(v) for v in invalid)}
    if not isinstance(data, da.Array):
        return median_block(np.asarray(data), **kwargs)
    data = data.rechunk({0: -1, 1: -1})
    n_bands = data.shape[1] - (scl is not None)
    return data.map_blocks(
        median_block,
        chunks=((len(groups),), (n_bands,), data.chunks[2], data.chunks[3]),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint16),
        **kwargs,
    )
