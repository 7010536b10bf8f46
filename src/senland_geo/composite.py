"""Exact cloudless median composites of uint16 cubes, chunk by chunk in integers.

The median of each pixel and band over a group of time steps, leaving out masked
observations (:func:`senland_geo.cube.valid_mask`) and band values of 0 (no data), is
computed on the uint16 values themselves: masked values become 65535 (they sort last),
the group is sorted along time (a min/max sorting network of whole planes for short
series) and the middle one or two are picked (where the sorted planes 1, 2, 3... are
used, no count or gather; ``np.sort`` and flat takes for long series). Two middle values ``a, b``
give ``round_half_even((a + b) / 2)``, pixels with no valid value give 0: exactly what
``float32 .where(...).median("time").fillna(0).round().astype("uint16")`` gives (the mean
of two uint16 values is exact in float32), several times faster and in a quarter of the
memory. One task per spatial chunk (:func:`median_array`), so composites stay lazy and
run on any dask scheduler.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

#: Series up to this length are sorted with a min/max sorting network (Batcher's odd-even
#: merge sort: 5 compare-exchanges of whole planes for 4 values, 19 for 8, against the
#: 6 and 28 of odd-even transposition) and their middle values picked plane by plane;
#: longer ones are sorted with ``np.sort`` and gathered with flat takes.
NETWORK_MAX = 12

_MASKED = np.uint16(65535)


@functools.cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Compare-exchange pairs ``(i, j)``, ``i < j``, that sort ``n`` values ascending.

    Batcher's odd-even merge sort for the next power of two, without the pairs that reach
    past ``n`` (as if padded with values larger than any: those never move).
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _sort_planes(planes: list[np.ndarray], spare: np.ndarray) -> np.ndarray:
    """Sort the ``planes`` (same-shape uint16 arrays) element-wise, in place in the list.

    Each compare-exchange writes the minimum to a spare buffer and the maximum in place,
    then swaps the references (two array passes, no copy).

    Returns:
        The buffer left spare (one of the arrays passed in).
    """
    for i, j in sorting_network(len(planes)):
        np.minimum(planes[i], planes[j], out=spare)
        np.maximum(planes[i], planes[j], out=planes[j])
        planes[i], spare = spare, planes[i]
    return spare


def median_of(values: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Median over axis 0 of the nonzero ``values`` where ``use`` is True; 0 where none is.

    Args:
        values: ``(time, ...)`` uint16.
        use: Boolean, broadcastable to ``values``.

    Returns:
        uint16 array of ``values.shape[1:]``: the middle value, or the mean of the two
        middle values rounded half to even.
    """
    shifted = np.where(use, values, np.uint16(0)).astype(np.uint16)
    shifted -= np.uint16(1)  # wraps: unused -> 65535, 1..65535 -> 0..65534
    return _median_shifted(shifted)


def _median_shifted(shifted: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The median of ``shifted + 1`` over axis 0, leaving out the entries that are 65535.

    ``shifted`` (uint16, modified in place) holds every value used minus one, and 65535
    for the others (masked, or 0: no data), so those sort last and the used ones keep
    their order.

    Args:
        shifted: ``(time, ...)`` uint16.
        out: Where to write the result (uint16, ``shifted.shape[1:]``), or None.
    """
    n = shifted.shape[0]
    if n <= NETWORK_MAX:
        planes = list(shifted)
        spare = _sort_planes(planes, np.empty_like(shifted[0]))
        return _middle_mean(*_middle_planes(planes, spare), out)
    count = (shifted != _MASKED).sum(axis=0, dtype=np.uint16)
    ordered = np.sort(shifted, axis=0)
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
    return _middle_mean(a, b, out)


def _middle_planes(planes: list[np.ndarray], spare: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper middle of sorted shifted ``planes`` (used values first).

    With ``c`` used values at a pixel, the middle ones are at ``(c - 1) // 2`` and
    ``c // 2``; since the used values come first, ``c > 2k`` exactly where plane ``2k``
    is used, so the lower middle is plane ``k`` wherever plane ``2k`` is used (the upper:
    wherever plane ``2k - 1`` is), taken for k = 1, 2, ... in turn. No count, no gather.
    With no used value both are plane 0 (65535). ``spare`` becomes the upper middle;
    plane 0 the lower one.
    """
    n = len(planes)
    upper = spare
    upper[...] = planes[0]
    flag = np.empty(planes[0].shape, dtype=bool)
    for k in range(1, (n + 1) // 2 + 1):
        if 2 * k - 1 < n:
            np.not_equal(planes[2 * k - 1], _MASKED, out=flag)
            np.copyto(upper, planes[k], where=flag)
    lower = planes[0]
    for k in range(1, (n - 1) // 2 + 1):
        np.not_equal(planes[2 * k], _MASKED, out=flag)
        np.copyto(lower, planes[k], where=flag)
    return lower, upper


def _middle_mean(a: np.ndarray, b: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``round_half_even((a + 1 + b + 1) / 2)`` in uint16, for shifted middles ``a <= b``.

    On the shifted values that is ``(a + b) / 2`` rounded half to *odd*, plus one (the
    shift flips the parity). Used values are at most 65534 shifted, so nothing overflows;
    two unused ones (65535) give 65535 + 1, which wraps to 0: no data. ``a`` is
    overwritten.
    """
    half = np.right_shift(b, 1, out=out)
    carry = np.bitwise_and(a, b)
    carry &= 1
    half += carry
    np.bitwise_xor(a, b, out=carry)  # odd total where the low bits differ
    a >>= 1
    half += a  # floor((a + b) / 2)
    np.invert(half, out=a)
    carry &= a
    carry &= 1  # x.5 with an even floor: round up to the odd neighbour
    half += carry
    half += np.uint16(1)
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
    if keep:  # observed: some band nonzero (OR-ed as integers, then one comparison)
        observed = block[:, keep[0]].copy()
        for band in keep[1:]:
            observed |= block[:, band]
        valid = observed != 0
    else:
        valid = np.zeros_like(block[:, 0], dtype=bool)
    if scl is not None:
        clear = np.ones(65536, dtype=bool)
        clear[np.asarray(invalid, dtype=np.uint16)] = False
        valid &= clear.take(block[:, scl])
    # 0 where an observation is used, 65535 where it is masked: OR-ed onto value - 1
    masked = valid.astype(np.uint16)
    masked -= np.uint16(1)
    out = np.zeros((len(groups), len(keep)) + block.shape[2:], dtype=np.uint16)
    for g, index in enumerate(groups):
        if len(index) == 0:
            continue
        index = list(index)
        if len(index) == 1:  # the median of one value: the value where it is used
            for j, band in enumerate(keep):
                np.multiply(block[index[0], band], valid[index[0]], out=out[g, j])
            continue
        shifted = np.empty((len(index),) + block.shape[2:], dtype=np.uint16)
        for j, band in enumerate(keep):  # band by band: small temporaries, cache-friendly
            for k, t in enumerate(index):
                # masked observations and no data (0) -> 65535, the rest minus one
                np.subtract(block[t, band], np.uint16(1), out=shifted[k])
                shifted[k] |= masked[t]
            _median_shifted(shifted, out=out[g, j])
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
