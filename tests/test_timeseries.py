import datetime as dt

import numpy as np
import pytest
import torch

from senland_geo.timeseries import (
    collate_series,
    days_since_epoch,
    month_starts,
    pad_series,
    resample_monthly,
    season_mask,
    season_window,
    to_datetime64,
)


def D(s):
    return np.datetime64(s, "D")


def series(values, c=1, h=1, w=1):
    """(T, C, H, W) float32 series whose step t is filled with values[t]."""
    v = np.asarray(values, dtype=np.float32)
    return np.broadcast_to(v[:, None, None, None], (len(v), c, h, w)).copy()


# ---- dates ------------------------------------------------------------------------------


def test_to_datetime64_accepts_every_encoding():
    expect = np.array(["2019-01-31", "2018-09-24"], dtype="datetime64[D]")
    assert (to_datetime64([20190131, 20180924]) == expect).all()
    assert (to_datetime64(["2019-01-31", "2018-09-24"]) == expect).all()
    assert (to_datetime64([dt.date(2019, 1, 31), dt.datetime(2018, 9, 24, 10)]) == expect).all()
    epoch = [17927, 17798]  # days since 1970-01-01
    assert (to_datetime64(np.array(epoch)) == expect).all()
    assert (to_datetime64(torch.tensor(epoch)) == expect).all()
    assert (to_datetime64(np.array([20190131, 20180924])) == expect).all()
    assert days_since_epoch(["2019-01-31"]).tolist() == [17927]
    with pytest.raises(ValueError, match="yyyymmdd"):
        to_datetime64([20191332])
    with pytest.raises(ValueError, match="ISO"):
        to_datetime64(["31/01/2019"])


def test_month_starts():
    got = month_starts("2018-11-20", "2019-02-01")
    assert got.tolist() == [
        dt.date(2018, 11, 1),
        dt.date(2018, 12, 1),
        dt.date(2019, 1, 1),
        dt.date(2019, 2, 1),
    ]
    with pytest.raises(ValueError, match="reversed"):
        month_starts("2019-02-01", "2018-11-20")


# ---- pad ----------------------------------------------------------------------------------


def test_pad_series_numpy():
    x = series([1, 2]).astype(np.int16)
    padded, mask = pad_series(x, ["2019-01-01", "2019-02-01"], 4)
    assert padded.shape == (4, 1, 1, 1) and padded.dtype == np.int16
    assert padded[:, 0, 0, 0].tolist() == [1, 2, 0, 0]
    assert mask.tolist() == [True, True, False, False]


def test_pad_series_torch_keeps_kind_and_pad_value():
    x = torch.tensor(series([5, 6, 7]))
    padded, mask = pad_series(x, None, 5, pad_value=-1)
    assert isinstance(padded, torch.Tensor) and padded.dtype == torch.float32
    assert padded[:, 0, 0, 0].tolist() == [5, 6, 7, -1, -1]
    assert mask.dtype == torch.bool and mask.tolist() == [True, True, True, False, False]


def test_pad_series_errors():
    with pytest.raises(ValueError, match="more than max_len=1"):
        pad_series(series([1, 2]), None, 1)
    with pytest.raises(ValueError, match="2 time steps but 3 dates"):
        pad_series(series([1, 2]), ["2019-01-01"] * 3, 4)
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        pad_series(np.zeros((2, 3)), None, 4)


# ---- monthly --------------------------------------------------------------------------------

DATES = ["2019-01-05", "2019-01-20", "2019-01-25", "2019-03-10"]
VALUES = [1, 3, 10, 7]


def test_resample_monthly_median():
    out, starts = resample_monthly(series(VALUES), DATES, "2019-01-01", "2019-03-31")
    assert starts.tolist() == [dt.date(2019, 1, 1), dt.date(2019, 2, 1), dt.date(2019, 3, 1)]
    assert out.shape == (3, 1, 1, 1) and out.dtype == np.float32
    assert out[0, 0, 0, 0] == 3  # median of 1, 3, 10
    assert np.isnan(out[1, 0, 0, 0])  # no February observation
    assert out[2, 0, 0, 0] == 7
    filled, _ = resample_monthly(series(VALUES), DATES, "2019-01-01", "2019-03-31", fill_value=0)
    assert filled[:, 0, 0, 0].tolist() == [3, 0, 7]


def test_resample_monthly_median_valid_mask():
    # (T,) mask: drop the 10 -> January median of 1 and 3 is 2 (numpy's even median)
    out, _ = resample_monthly(
        series(VALUES), DATES, "2019-01-01", "2019-01-31", valid_mask=[True, True, False, True]
    )
    assert out[:, 0, 0, 0].tolist() == [2.0]
    # (T, H, W) mask: pixel 0 keeps everything, pixel 1 only the 10
    x = series(VALUES, w=2)
    valid = np.ones((4, 1, 2), dtype=bool)
    valid[[0, 1], 0, 1] = False
    out, _ = resample_monthly(x, DATES, "2019-01-01", "2019-01-31", valid_mask=valid)
    assert out[0, 0, 0].tolist() == [3.0, 10.0]
    with pytest.raises(ValueError, match="valid_mask shape"):
        resample_monthly(x, DATES, "2019-01-01", "2019-01-31", valid_mask=np.ones((4, 3)))


def test_resample_monthly_nearest():
    out, starts = resample_monthly(series(VALUES), DATES, "2019-01-01", "2019-03-31", how="nearest")
    # Jan 15: Jan 20 (+5) beats Jan 5 (-10); Feb 15: Jan 25 (-21) beats Mar 10 (+23)
    assert out[:, 0, 0, 0].tolist() == [3, 10, 7]
    assert len(starts) == 3


def test_resample_monthly_nearest_tie_and_mask_and_torch():
    x = torch.tensor(series([4, 8], w=2))
    dates = ["2019-01-10", "2019-01-20"]  # both 5 days from Jan 15: the earlier wins
    valid = torch.tensor([[[True, False]], [[True, True]]])
    out, _ = resample_monthly(x, dates, "2019-01-01", "2019-01-31", how="nearest", valid_mask=valid)
    assert isinstance(out, torch.Tensor)
    assert out[0, 0, 0].tolist() == [4.0, 8.0]  # pixel 1 skips the invalid Jan 10
    none_valid = torch.zeros(2, 1, 2, dtype=torch.bool)
    out, _ = resample_monthly(
        x, dates, "2019-01-01", "2019-01-31", how="nearest", valid_mask=none_valid, fill_value=-5
    )
    assert out[0, 0, 0].tolist() == [-5.0, -5.0]
    with pytest.raises(ValueError, match="how='mean'"):
        resample_monthly(x, dates, "2019-01-01", "2019-01-31", how="mean")


# ---- season -------------------------------------------------------------------------------

YEAR = [
    "2018-09-24",
    "2018-12-31",
    "2019-01-01",
    "2019-02-14",
    "2019-07-31",
    "2019-08-01",
    "2019-10-20",
]


def test_season_window_january_to_july():
    x = series(range(len(YEAR)))
    xs, ds = season_window(x, YEAR, (1, 7))
    assert xs[:, 0, 0, 0].tolist() == [2, 3, 4]
    assert [str(d) for d in ds] == ["2019-01-01", "2019-02-14", "2019-07-31"]


def test_season_window_month_day_bounds_and_wrap():
    assert season_mask(YEAR, ("02-14", "08-01")).tolist() == [
        False, False, False, True, True, True, False]  # fmt: skip
    assert season_mask(YEAR, (10, 1)).tolist() == [
        False, True, True, False, False, False, True]  # fmt: skip
    assert season_mask(["2020-02-29"], ("02-29", "02-29")).tolist() == [True]
    with pytest.raises(ValueError, match="1..12"):
        season_mask(YEAR, (0, 7))
    with pytest.raises(ValueError, match="MM-DD"):
        season_mask(YEAR, ("Jan", "07-31"))


def test_season_window_torch():
    x = torch.tensor(series(range(len(YEAR))))
    xs, ds = season_window(x, torch.tensor(days_since_epoch(YEAR)), (1, 7))
    assert isinstance(xs, torch.Tensor) and xs[:, 0, 0, 0].tolist() == [2, 3, 4]
    assert len(ds) == 3


# ---- collate -----------------------------------------------------------------------------


def test_collate_series_pads_and_masks():
    a = {
        "image": torch.ones(3, 2, 4, 4),
        "dates": torch.tensor([10, 20, 30]),
        "mask": torch.zeros(4, 4, dtype=torch.int64),
        "id": "a",
    }
    b = {
        "image": torch.full((5, 2, 4, 4), 2.0),
        "dates": torch.tensor([1, 2, 3, 4, 5]),
        "mask": torch.ones(4, 4, dtype=torch.int64),
        "id": "b",
    }
    batch = collate_series([a, b])
    assert batch["image"].shape == (2, 5, 2, 4, 4)
    assert batch["image"][0, 3:].abs().sum() == 0 and batch["image"][0, :3].min() == 1
    assert batch["date_mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["dates"].tolist() == [[10, 20, 30, 0, 0], [1, 2, 3, 4, 5]]
    assert batch["mask"].shape == (2, 4, 4) and batch["mask"].dtype == torch.int64
    assert batch["id"] == ["a", "b"]


def test_collate_series_keeps_existing_masks():
    a = {"image": torch.ones(3, 1, 2, 2), "date_mask": torch.tensor([True, False, True])}
    b = {"image": torch.ones(2, 1, 2, 2)}
    batch = collate_series([a, b])
    assert batch["date_mask"].tolist() == [[True, False, True], [True, True, False]]
    assert "dates" not in batch
    with pytest.raises(ValueError, match="same C, H, W"):
        collate_series([a, {"image": torch.ones(2, 2, 2, 2)}])
