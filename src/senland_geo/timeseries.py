"""Satellite image time series: dates, padding, monthly composites, season windows.

Pure functions over ``(T, C, H, W)`` series that accept numpy arrays or torch tensors and
return the same kind they were given. Dates may be given as ``numpy.datetime64`` values,
``datetime.date`` objects, ISO strings (``"2019-01-31"``), PASTIS-style ``yyyymmdd``
integers (``20190131``) or integer days since 1970-01-01 (what the datasets store, since
torch has no date type). Integers of 10,000,000 and above are read as ``yyyymmdd``, smaller
ones as days since the epoch; see :func:`to_datetime64`.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "collate_series",
    "days_since_epoch",
    "month_starts",
    "pad_series",
    "resample_monthly",
    "season_mask",
    "season_window",
    "to_datetime64",
]

ArrayLike = np.ndarray | torch.Tensor
DateLike = np.datetime64 | dt.date | str | int | np.integer
Dates = Sequence[DateLike] | np.ndarray | torch.Tensor

_YYYYMMDD_MIN = 10_000_000


def _date_from_int(value: int) -> np.datetime64:
    if value >= _YYYYMMDD_MIN:
        year, rest = divmod(int(value), 10_000)
        month, day = divmod(rest, 100)
        try:
            return np.datetime64(dt.date(year, month, day), "D")
        except ValueError:
            raise ValueError(
                f"date {value} is not a valid yyyymmdd integer (year {year}, month {month}, "
                f"day {day})"
            ) from None
    return np.datetime64(int(value), "D")


def to_datetime64(dates: Dates | DateLike) -> np.ndarray:
    """Convert dates to a 1-D ``datetime64[D]`` array.

    Args:
        dates: One date or a sequence of dates: ``datetime64``, ``date``/``datetime``, ISO
            strings, ``yyyymmdd`` integers (>= 10,000,000) or integer days since 1970-01-01.
            A torch tensor is read as integers.

    Returns:
        Array of dtype ``datetime64[D]`` and shape ``(T,)`` (``(1,)`` for a single date).

    Raises:
        ValueError: A value is not a date.
    """
    if isinstance(dates, torch.Tensor):
        dates = dates.detach().cpu().numpy()
    if isinstance(dates, np.ndarray):
        if np.issubdtype(dates.dtype, np.datetime64):
            return dates.astype("datetime64[D]").reshape(-1)
        if np.issubdtype(dates.dtype, np.integer):
            flat = dates.reshape(-1).astype(np.int64)
            if flat.size and flat.min() >= _YYYYMMDD_MIN:
                return np.array([_date_from_int(int(v)) for v in flat], dtype="datetime64[D]")
            if flat.size and flat.max() < _YYYYMMDD_MIN:
                return flat.astype("datetime64[D]")
        dates = dates.reshape(-1).tolist()
    if isinstance(dates, str | int | np.integer | dt.date | np.datetime64):
        dates = [dates]
    out = []
    for value in dates:  # type: ignore[union-attr]
        if isinstance(value, np.datetime64):
            out.append(value.astype("datetime64[D]"))
        elif isinstance(value, dt.datetime):
            out.append(np.datetime64(value.date(), "D"))
        elif isinstance(value, dt.date):
            out.append(np.datetime64(value, "D"))
        elif isinstance(value, bool):
            raise ValueError(f"date {value!r} is a boolean, not a date")
        elif isinstance(value, int | np.integer):
            out.append(_date_from_int(int(value)))
        elif isinstance(value, str):
            try:
                out.append(np.datetime64(dt.date.fromisoformat(value.strip()[:10]), "D"))
            except ValueError:
                raise ValueError(f"date {value!r} is not an ISO date (YYYY-MM-DD)") from None
        else:
            raise ValueError(
                f"date {value!r} of type {type(value).__name__} is not understood; use "
                "datetime64, date, 'YYYY-MM-DD', yyyymmdd ints or days since 1970-01-01"
            )
    return np.array(out, dtype="datetime64[D]")


def days_since_epoch(dates: Dates) -> np.ndarray:
    """Return dates as int64 days since 1970-01-01 (the datasets' ``dates`` encoding)."""
    return to_datetime64(dates).astype(np.int64)


def _to_numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _like(result: np.ndarray, template: ArrayLike) -> ArrayLike:
    if isinstance(template, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(result)).to(template.device)
    return result


def _check_series(x: ArrayLike, dates: Dates | None, what: str) -> int:
    if x.ndim != 4:
        raise ValueError(f"{what}: x must be (T, C, H, W); got shape {tuple(x.shape)}")
    t = int(x.shape[0])
    if dates is not None and len(dates) != t:
        raise ValueError(f"{what}: x has {t} time steps but {len(dates)} dates were given")
    return t


def pad_series(
    x: ArrayLike,
    dates: Dates | None,
    max_len: int,
    pad_value: float = 0,
) -> tuple[ArrayLike, ArrayLike]:
    """Pad a ``(T, C, H, W)`` series at the end to ``max_len`` time steps.

    Args:
        x: The series, numpy or torch.
        dates: Its ``T`` dates (only checked for length), or None.
        max_len: Length to pad to; must be >= T.
        pad_value: Value of the padded steps.

    Returns:
        ``(x_padded, date_mask)``: ``x_padded`` is ``(max_len, C, H, W)`` of the same kind
        and dtype as ``x``; ``date_mask`` is a ``(max_len,)`` bool array/tensor, True for
        real steps.

    Raises:
        ValueError: ``T > max_len`` (select a season or resample monthly first) or bad shape.
    """
    t = _check_series(x, dates, "pad_series")
    if max_len < t:
        raise ValueError(
            f"pad_series: series has {t} time steps, more than max_len={max_len}; raise "
            "max_len, select a season (season_window) or resample monthly (resample_monthly)"
        )
    extra = max_len - t
    if isinstance(x, torch.Tensor):
        pad = torch.full((extra, *x.shape[1:]), pad_value, dtype=x.dtype, device=x.device)
        mask = torch.zeros(max_len, dtype=torch.bool, device=x.device)
        mask[:t] = True
        return torch.cat([x, pad], dim=0), mask
    pad = np.full((extra, *x.shape[1:]), pad_value, dtype=x.dtype)
    mask_np = np.zeros(max_len, dtype=bool)
    mask_np[:t] = True
    return np.concatenate([x, pad], axis=0), mask_np


def month_starts(start: DateLike, end: DateLike) -> np.ndarray:
    """Return the first day of every month from ``start``'s month to ``end``'s, inclusive."""
    first = to_datetime64(start)[0].astype("datetime64[M]")
    last = to_datetime64(end)[0].astype("datetime64[M]")
    if last < first:
        raise ValueError(f"month range {start}..{end} is reversed; put the start first")
    return np.arange(first, last + 1).astype("datetime64[D]")


def resample_monthly(
    x: ArrayLike,
    dates: Dates,
    start: DateLike,
    end: DateLike,
    how: Literal["median", "nearest"] = "median",
    valid_mask: ArrayLike | None = None,
    fill_value: float = float("nan"),
) -> tuple[ArrayLike, np.ndarray]:
    """Resample an irregular series to one image per calendar month.

    ``how="median"`` takes, per pixel and band, the median of the valid observations dated
    inside the month (numpy's median: the mean of the two middle values for an even
    count); a month or pixel without any valid observation gets ``fill_value``.
    ``how="nearest"`` takes, per pixel, the valid observation closest in time to the 15th
    of the month, searching the whole series (ties go to the earlier one); only a pixel
    with no valid observation at all gets ``fill_value``.

    Args:
        x: ``(T, C, H, W)`` series, numpy or torch.
        dates: Its ``T`` dates.
        start: A date in the first month of the output.
        end: A date in the last month of the output.
        how: ``"median"`` or ``"nearest"``.
        valid_mask: Optional bool mask of usable observations, ``(T,)`` or ``(T, H, W)``
            (e.g. not cloudy); None means all are valid.
        fill_value: Value where nothing valid is available.

    Returns:
        ``(x_monthly, month_starts)``: ``(M, C, H, W)`` float32 (same kind as ``x``) and the
        ``(M,)`` ``datetime64[D]`` first days of the months.

    Raises:
        ValueError: Bad shapes, a reversed range or an unknown ``how``.
    """
    t = _check_series(x, dates, "resample_monthly")
    if how not in ("median", "nearest"):
        raise ValueError(f"resample_monthly: how={how!r} unknown; use 'median' or 'nearest'")
    days = to_datetime64(dates)
    starts = month_starts(start, end)
    data = _to_numpy(x).astype(np.float32, copy=True)
    _, c, h, w = data.shape
    if valid_mask is None:
        valid = np.ones((t, h, w), dtype=bool)
    else:
        valid = _to_numpy(valid_mask).astype(bool)
        if valid.shape == (t,):
            valid = np.broadcast_to(valid[:, None, None], (t, h, w))
        elif valid.shape != (t, h, w):
            raise ValueError(
                f"resample_monthly: valid_mask shape {valid.shape} must be ({t},) or "
                f"({t}, {h}, {w})"
            )
    out = np.full((len(starts), c, h, w), fill_value, dtype=np.float32)
    obs_month = days.astype("datetime64[M]")
    if how == "median":
        masked = np.where(valid[:, None], data, np.nan)
        for m, month in enumerate(starts.astype("datetime64[M]")):
            sel = obs_month == month
            if not sel.any():
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
                med = np.nanmedian(masked[sel], axis=0)
            out[m] = np.where(np.isnan(med), fill_value, med)
    else:
        day_num = days.astype(np.int64)
        for m, first in enumerate(starts):
            target = (first + np.timedelta64(14, "D")).astype(np.int64)
            # distance with a tie-break towards earlier dates: 2*|d| + (d > 0)
            delta = day_num - target
            key = 2 * np.abs(delta) + (delta > 0)
            order = np.argsort(key, kind="stable")
            filled = np.zeros((h, w), dtype=bool)
            for i in order:
                take = valid[i] & ~filled
                if take.any():
                    out[m][:, take] = data[i][:, take]
                    filled |= take
                if filled.all():
                    break
    return _like(out, x), starts


def _month_day(value: int | str, what: str, is_end: bool) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        month = int(value)
        if not 1 <= month <= 12:
            raise ValueError(f"season {what} month {value} must be 1..12")
        day = 31 if is_end else 1
        return month, day
    if isinstance(value, str):
        try:
            month_s, day_s = value.strip().split("-")
            month, day = int(month_s), int(day_s)
            dt.date(2000, month, day)  # leap year: 02-29 allowed
        except ValueError:
            raise ValueError(
                f"season {what} {value!r} must be a month number or 'MM-DD', e.g. '07-31'"
            ) from None
        return month, day
    raise ValueError(f"season {what} {value!r} must be a month number (1..12) or 'MM-DD'")


def season_mask(dates: Dates, months: tuple[int, int] | tuple[str, str] = (1, 7)) -> np.ndarray:
    """Return a bool mask of the dates inside a yearly season window.

    Args:
        dates: The dates.
        months: ``(first_month, last_month)`` inclusive, e.g. ``(1, 7)`` for January 1st to
            July 31st, or ``("MM-DD", "MM-DD")`` inclusive bounds. A window whose start
            comes after its end wraps over the new year, e.g. ``(10, 3)`` is October-March.

    Returns:
        ``(T,)`` bool array.
    """
    if len(months) != 2:
        raise ValueError(f"season {months!r} must be (start, end)")
    start = _month_day(months[0], "start", is_end=False)
    end = _month_day(months[1], "end", is_end=True)
    days = to_datetime64(dates)
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    key = month * 100 + day
    lo, hi = start[0] * 100 + start[1], end[0] * 100 + end[1]
    if lo <= hi:
        return (key >= lo) & (key <= hi)
    return (key >= lo) | (key <= hi)


def season_window(
    x: ArrayLike,
    dates: Dates,
    months: tuple[int, int] | tuple[str, str] = (1, 7),
) -> tuple[ArrayLike, np.ndarray]:
    """Keep only the observations inside a yearly season window (e.g. January-July).

    The AgrUNet study halved its series this way (January-July) at no loss of accuracy.

    Args:
        x: ``(T, C, H, W)`` series, numpy or torch.
        dates: Its ``T`` dates.
        months: Window, see :func:`season_mask`.

    Returns:
        ``(x_window, dates_window)``: the selected steps (same kind as ``x``) and their dates
        as ``datetime64[D]``.
    """
    _check_series(x, dates, "season_window")
    keep = season_mask(dates, months)
    days = to_datetime64(dates)
    if isinstance(x, torch.Tensor):
        idx = torch.from_numpy(np.flatnonzero(keep)).to(x.device)
        return x.index_select(0, idx), days[keep]
    return x[keep], days[keep]


def collate_series(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples whose series have different lengths into a padded batch.

    Every sample is a dict with ``"image"`` ``(T_i, C, H, W)``; optional ``"dates"``
    ``(T_i,)`` and ``"date_mask"`` ``(T_i,)``. Series are zero-padded at the end to the
    longest ``T`` in the batch.

    Args:
        batch: The samples (numpy or torch).

    Returns:
        ``"image"`` ``(B, T, C, H, W)``, ``"dates"`` ``(B, T)`` int64 (0 where padded),
        ``"date_mask"`` ``(B, T)`` bool (True for real observations); other tensor or array
        entries of equal shape are stacked; anything else is kept as a list.
    """
    if not batch:
        raise ValueError("collate_series: the batch is empty")
    images = [torch.as_tensor(s["image"]) for s in batch]
    shapes = {tuple(im.shape[1:]) for im in images}
    if len(shapes) != 1 or images[0].ndim != 4:
        raise ValueError(
            "collate_series: images must all be (T, C, H, W) with the same C, H, W; got "
            f"{[tuple(im.shape) for im in images]}"
        )
    t_max = max(int(im.shape[0]) for im in images)
    out: dict[str, Any] = {}
    padded, masks, dates = [], [], []
    for sample, im in zip(batch, images, strict=True):
        t = int(im.shape[0])
        padded.append(torch.cat([im, im.new_zeros((t_max - t, *im.shape[1:]))], dim=0))
        mask = torch.zeros(t_max, dtype=torch.bool)
        mask[:t] = torch.as_tensor(sample["date_mask"]).bool() if "date_mask" in sample else True
        masks.append(mask)
        if "dates" in sample:
            d = torch.zeros(t_max, dtype=torch.int64)
            d[:t] = torch.as_tensor(days_since_epoch(sample["dates"]))
            dates.append(d)
    out["image"] = torch.stack(padded)
    out["date_mask"] = torch.stack(masks)
    if len(dates) == len(batch):
        out["dates"] = torch.stack(dates)
    for key in batch[0]:
        if key in ("image", "date_mask", "dates"):
            continue
        values = [s.get(key) for s in batch]
        if all(isinstance(v, torch.Tensor | np.ndarray) for v in values):
            tensors = [torch.as_tensor(v) for v in values]
            if len({tuple(v.shape) for v in tensors}) == 1:
                out[key] = torch.stack(tensors)
                continue
        out[key] = list(values)
    return out
