"""Crop-type benchmark datasets the user downloads: PASTIS (France) and MTLCC (Munich).

Both readers take the data in its published layout and give the same samples::

    {"image": float32 (T, C, H, W),   # raw values (reflectance x 1e4), bands in ``.bands``
     "mask": int64 (H, W),            # model indices of the region's class table,
                                      # -100 (classes.IGNORE_INDEX) where to ignore
     "dates": int64 (T,),             # days since 1970-01-01 (0 where padded)
     "date_mask": bool (T,),          # True for real observations / non-empty months
     "id": str}                       # patch / tile id

so a :class:`torch.utils.data.DataLoader` with :func:`collate_series` gives
``(B, T, C, H, W)`` images, ``(B, H, W)`` masks and a ``(B, T)`` date mask.

* ``france-pastis``: PASTIS (Garnot & Landrieu 2021), read through
  :class:`torchgeo.datasets.PASTIS` (semantic task, official folds 1-5), plus the
  acquisition dates and normalisation values from ``metadata.geojson`` and
  ``NORM_S2_patch.json``.
* ``munich``: MTLCC (Russwurm & Koerner 2018): gzipped TFRecord files of ``tf.train.Example``
  protos, read here without tensorflow by a small TFRecord + protobuf decoder.

Neither data set can be downloaded by senland-geo: when a folder is missing or incomplete
the error names the path, where to download the data and where to put it.
"""

from __future__ import annotations

import configparser
import gzip
import json
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from senland_geo.classes import IGNORE_INDEX, MTLCC, PASTIS
from senland_geo.errors import UserError
from senland_geo.regions import FRANCE_PASTIS, MUNICH, S2_BANDS_10
from senland_geo.timeseries import (
    collate_series,
    days_since_epoch,
    pad_series,
    resample_monthly,
    season_mask,
    to_datetime64,
)

__all__ = [
    "MTLCC_RAW_CLASSES",
    "MTLCC_URL",
    "PASTIS_URL",
    "MtlccDataset",
    "PastisDataset",
    "collate_series",
    "iter_tfrecords",
    "open_crop_dataset",
    "parse_example",
]

PASTIS_URL = "https://zenodo.org/record/5012942"
MTLCC_URL = "https://github.com/MarcCoru/MTLCC"
_MTLCC_HOW = (
    f"download data_IJGI18.zip (full, 40 GB) or data_IJGI18_demo.zip with the links in the "
    f"MTLCC README / download.sh ({MTLCC_URL}; the full archive is also on Zenodo, record "
    "5712933), unzip it"
)

Temporal = Literal["pad", "monthly"]
Season = tuple[int, int] | tuple[str, str]

# --------------------------------------------------------------------------------------
# shared sample building


def _check_options(temporal: str, monthly_how: str, max_len: int | None) -> None:
    if temporal not in ("pad", "monthly"):
        raise ValueError(f"temporal={temporal!r} unknown; use 'pad' or 'monthly'")
    if monthly_how not in ("median", "nearest"):
        raise ValueError(f"monthly_how={monthly_how!r} unknown; use 'median' or 'nearest'")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len={max_len} must be a positive number of time steps")


def _build_sample(
    image: np.ndarray,
    dates: np.ndarray,
    mask: np.ndarray,
    sample_id: str,
    *,
    season: Season | None,
    temporal: str,
    max_len: int | None,
    monthly_how: str,
    monthly_range: tuple[np.datetime64, np.datetime64],
) -> dict[str, Any]:
    """Apply the season window and the temporal option; return the sample dict."""
    order = np.argsort(dates, kind="stable")
    image, dates = image[order], dates[order]
    if season is not None:
        keep = season_mask(dates, season)
        image, dates = image[keep], dates[keep]
    if temporal == "monthly":
        monthly, starts = resample_monthly(
            image, dates, monthly_range[0], monthly_range[1], how=monthly_how, fill_value=0.0
        )
        observed = np.isin(starts.astype("datetime64[M]"), dates.astype("datetime64[M]"))
        if season is not None:
            keep = season_mask(starts, season)
            monthly, starts, observed = monthly[keep], starts[keep], observed[keep]
        image, date_ns, date_mask = monthly, days_since_epoch(starts), observed
    else:
        date_ns = days_since_epoch(dates)
        date_mask = np.ones(len(date_ns), dtype=bool)
        if max_len is not None:
            if len(date_ns) > max_len:
                raise ValueError(
                    f"patch {sample_id} has {len(date_ns)} observations, more than "
                    f"max_len={max_len}; raise max_len, pass a season or use temporal='monthly'"
                )
            image, date_mask = pad_series(image, None, max_len)
            date_ns = np.concatenate([date_ns, np.zeros(max_len - len(date_ns), np.int64)])
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
        "dates": torch.from_numpy(date_ns.astype(np.int64)),
        "date_mask": torch.from_numpy(np.asarray(date_mask, dtype=bool)),
        "id": sample_id,
    }


# --------------------------------------------------------------------------------------
# PASTIS

#: PASTIS semantic label (0 background, 1..18 crops, 19 void) -> senland class code
#: (0 = no label, ignored). Background becomes code 20 "Background" of classes.PASTIS.
_PASTIS_LABEL_TO_CODE = np.array([20, *range(1, 19), 0], dtype=np.int64)


def pastis_label_lut() -> np.ndarray:
    """Return a lookup table PASTIS semantic label (0..19) -> model index (or -100)."""
    code_to_index = PASTIS.code_to_index_lut()
    return code_to_index[_PASTIS_LABEL_TO_CODE]


def _resolve_pastis_dir(data_dir: str | os.PathLike[str]) -> Path:
    """Find the PASTIS folder (the one holding metadata.geojson) in or under ``data_dir``."""
    root = Path(data_dir).expanduser()
    for cand in (root, root / "PASTIS", root / "PASTIS-R"):
        if (cand / "metadata.geojson").is_file():
            return cand
    raise UserError(
        f"PASTIS data not found: expected {root / 'metadata.geojson'} with DATA_S2/S2_<id>.npy "
        f"and ANNOTATIONS/TARGET_<id>.npy beside it. Download PASTIS.zip from {PASTIS_URL}, "
        f"unzip it and give its PASTIS folder as --data-dir (here: put the contents of "
        f"PASTIS/ in {root}, or the PASTIS folder itself at {root / 'PASTIS'})."
    )


def _torchgeo_pastis_class() -> type:
    from torchgeo.datasets import PASTIS as TorchgeoPASTIS

    class _FolderPASTIS(TorchgeoPASTIS):  # type: ignore[misc,valid-type]
        """torchgeo's PASTIS reading an already-extracted folder of any name."""

        def __init__(self, folder: Path, folds: Sequence[int]) -> None:
            self.directory = folder.name
            super().__init__(
                root=str(folder.parent),
                folds=tuple(folds),
                bands="s2",
                mode="semantic",
                download=False,
                checksum=False,
            )

    return _FolderPASTIS


class PastisDataset(Dataset):
    """PASTIS satellite image time series with semantic crop labels (``france-pastis``).

    Expects the published layout (``PASTIS.zip`` from Zenodo record 5012942, or PASTIS-R)::

        <data_dir>/metadata.geojson       ID_PATCH, Fold (1..5), TILE, dates-S2, geometry
        <data_dir>/NORM_S2_patch.json     {"Fold_k": {"mean": [10], "std": [10]}}
        <data_dir>/DATA_S2/S2_<id>.npy    (T, 10, 128, 128) int16, bands B02..B12
        <data_dir>/ANNOTATIONS/TARGET_<id>.npy   (3, 128, 128), semantic labels in [0]

    ``data_dir`` may also be the folder above ``PASTIS/`` (or ``PASTIS-R/``). Images and
    labels are read with :class:`torchgeo.datasets.PASTIS`; labels are mapped to
    :data:`senland_geo.classes.PASTIS` indices (0 background -> "Background", 19 void ->
    ignore index -100).

    Args:
        data_dir: The PASTIS folder (``--data-dir``).
        folds: Official folds (1..5) to include.
        season: Keep only observations in a yearly window, e.g. ``(1, 7)`` January-July or
            ``("01-01", "07-31")``.
        temporal: ``"pad"`` keeps every observation (padded to ``max_len`` if given, else
            left to :func:`collate_series`); ``"monthly"`` makes one composite per month of
            ``monthly_range`` (default: the region's time range, 2018-09..2019-10).
        max_len: Pad each series to this length (``temporal="pad"`` only).
        monthly_how: ``"median"`` or ``"nearest"`` (see :func:`resample_monthly`).
        monthly_range: ``(start, end)`` dates of the monthly grid.
        normalize: Z-score the bands with the ``NORM_S2_patch.json`` means and stds averaged
            over the selected folds (as the official loader does).
        transforms: Optional callable applied to each sample dict.

    Raises:
        UserError: The folder or files in it are missing.
    """

    bands: tuple[str, ...] = S2_BANDS_10
    classes = PASTIS
    collate_fn = staticmethod(collate_series)

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        folds: Sequence[int] = (1, 2, 3, 4, 5),
        season: Season | None = None,
        temporal: Temporal = "pad",
        max_len: int | None = None,
        monthly_how: Literal["median", "nearest"] = "median",
        monthly_range: tuple[str, str] | None = None,
        normalize: bool = False,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        folds = tuple(int(f) for f in folds)
        bad = [f for f in folds if not 1 <= f <= 5]
        if bad or not folds:
            raise ValueError(f"PASTIS folds {list(folds)} must be chosen from 1, 2, 3, 4, 5")
        _check_options(temporal, monthly_how, max_len)
        self.root = _resolve_pastis_dir(data_dir)
        self.folds = folds
        self.season = season
        self.temporal = temporal
        self.max_len = max_len
        self.monthly_how = monthly_how
        rng = monthly_range or FRANCE_PASTIS.time_range
        self.monthly_range = (to_datetime64(rng[0])[0], to_datetime64(rng[1])[0])
        self.transforms = transforms
        self._dates = self._read_dates()
        self._check_files()
        self._ds = _torchgeo_pastis_class()(self.root, folds)
        self.ids: list[str] = [str(i) for i in self._ds.idxs]
        self._lut = torch.from_numpy(pastis_label_lut())
        self.norm: tuple[np.ndarray, np.ndarray] | None = self._read_norm() if normalize else None

    def _read_dates(self) -> dict[str, np.ndarray]:
        path = self.root / "metadata.geojson"
        try:
            meta = json.loads(path.read_text())
            features = meta["features"]
        except (OSError, ValueError, KeyError) as err:
            raise UserError(
                f"PASTIS metadata {path} is not a readable GeoJSON FeatureCollection ({err}); "
                f"download PASTIS again from {PASTIS_URL} and unzip it into {self.root}"
            ) from None
        dates: dict[str, np.ndarray] = {}
        self._folds_by_id: dict[str, int] = {}
        for feat in features:
            props = feat["properties"]
            pid = str(int(props["ID_PATCH"]))
            raw = props["dates-S2"]
            if isinstance(raw, str):
                raw = json.loads(raw)
            ordered = [raw[k] for k in sorted(raw, key=int)]
            dates[pid] = to_datetime64([int(v) for v in ordered])
            self._folds_by_id[pid] = int(props["Fold"])
        return dates

    def _check_files(self) -> None:
        wanted = [pid for pid, f in self._folds_by_id.items() if f in self.folds]
        missing = []
        for pid in wanted:
            for rel in (f"DATA_S2/S2_{pid}.npy", f"ANNOTATIONS/TARGET_{pid}.npy"):
                if not (self.root / rel).is_file():
                    missing.append(rel)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise UserError(
                f"PASTIS data in {self.root} is incomplete: missing "
                f"{', '.join(str(self.root / m) for m in missing[:3])}{more}. Download "
                f"PASTIS.zip from {PASTIS_URL} and unzip all of it into {self.root} "
                "(the folder given as --data-dir)."
            )

    def _read_norm(self) -> tuple[np.ndarray, np.ndarray]:
        path = self.root / "NORM_S2_patch.json"
        if not path.is_file():
            raise UserError(
                f"normalize=True needs {path} (in PASTIS.zip from {PASTIS_URL}); put the file "
                f"in {self.root} or pass normalize=False"
            )
        vals = json.loads(path.read_text())
        means = np.stack([vals[f"Fold_{f}"]["mean"] for f in self.folds]).mean(axis=0)
        stds = np.stack([vals[f"Fold_{f}"]["std"] for f in self.folds]).mean(axis=0)
        return means.astype(np.float32), stds.astype(np.float32)

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return the sample dict of patch ``index`` (see the module docstring)."""
        raw = self._ds[index]
        pid = self.ids[index]
        image = raw["image"].numpy().astype(np.float32, copy=False)
        dates = self._dates[pid]
        if len(dates) != image.shape[0]:
            raise UserError(
                f"PASTIS patch {pid}: {self.root / 'DATA_S2' / f'S2_{pid}.npy'} has "
                f"{image.shape[0]} images but metadata.geojson lists {len(dates)} dates; the "
                f"download looks corrupt, get it again from {PASTIS_URL}"
            )
        if self.norm is not None:
            mean, std = self.norm
            image = (image - mean[None, :, None, None]) / std[None, :, None, None]
        mask = self._lut[raw["mask"].clamp(0, 19)].numpy()
        sample = _build_sample(
            image,
            dates,
            mask,
            pid,
            season=self.season,
            temporal=self.temporal,
            max_len=self.max_len,
            monthly_how=self.monthly_how,
            monthly_range=self.monthly_range,
        )
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


# --------------------------------------------------------------------------------------
# TFRecord + tf.train.Example decoding (no tensorflow)

_CRC_TABLE: list[int] | None = None


def _crc32c_py(data: bytes) -> int:
    global _CRC_TABLE
    if _CRC_TABLE is None:
        table = []
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            table.append(crc)
        _CRC_TABLE = table
    crc = 0xFFFFFFFF
    tab = _CRC_TABLE
    for byte in data:
        crc = tab[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c(data: bytes) -> int:
    try:
        import google_crc32c
    except ImportError:  # pragma: no cover - depends on the environment
        return _crc32c_py(data)
    return int(google_crc32c.value(data))


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32-C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def iter_tfrecords(path: str | os.PathLike[str], verify: bool = False) -> Iterator[bytes]:
    """Yield the records of a TFRecord file (plain or gzip-compressed).

    Each record is framed as ``uint64 length, uint32 masked_crc32c(length), bytes,
    uint32 masked_crc32c(bytes)`` (little endian). The length CRC is always checked;
    the data CRC only with ``verify=True``.

    Raises:
        UserError: The file is truncated or corrupt.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            while True:
                header = fh.read(12)
                if not header:
                    return
                if len(header) < 12:
                    raise UserError(f"TFRecord file {path} is truncated (partial header)")
                (length,) = struct.unpack("<Q", header[:8])
                (len_crc,) = struct.unpack("<I", header[8:])
                if masked_crc32c(header[:8]) != len_crc:
                    raise UserError(f"TFRecord file {path} is corrupt (bad length checksum)")
                data = fh.read(length)
                footer = fh.read(4)
                if len(data) < length or len(footer) < 4:
                    raise UserError(f"TFRecord file {path} is truncated (partial record)")
                if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                    raise UserError(f"TFRecord file {path} is corrupt (bad data checksum)")
                yield data
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"cannot read TFRecord file {path}: {err}") from None


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)`` of a protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_feature(buf: memoryview) -> list[Any]:
    for kind, _, payload in _fields(buf):
        values: list[Any] = []
        if kind == 1:  # BytesList
            values = [bytes(v) for f, _, v in _fields(payload) if f == 1]
        elif kind == 2:  # FloatList: packed (wire 2) or not (wire 5)
            for f, wire, v in _fields(payload):
                if f == 1:
                    values.extend(
                        struct.unpack(f"<{len(v) // 4}f", v)
                        if wire == 2
                        else [struct.unpack("<f", v)[0]]
                    )
        elif kind == 3:  # Int64List: packed (wire 2) or not (wire 0)
            for f, wire, v in _fields(payload):
                if f != 1:
                    continue
                if wire == 2:
                    pos = 0
                    while pos < len(v):
                        n, pos = _varint(v, pos)
                        values.append(_signed64(n))
                else:
                    values.append(_signed64(v))
        return values
    return []


def parse_example(record: bytes) -> dict[str, list[Any]]:
    """Decode a serialized ``tf.train.Example`` into ``{name: values}``.

    Values are lists of ``bytes`` (BytesList), ``float`` (FloatList) or ``int``
    (Int64List).
    """
    out: dict[str, list[Any]] = {}
    view = memoryview(record)
    for field, _, features in _fields(view):
        if field != 1:
            continue
        for f, _, entry in _fields(features):
            if f != 1:
                continue
            key, value = None, memoryview(b"")
            for ef, _, ev in _fields(entry):
                if ef == 1:
                    key = bytes(ev).decode("utf-8")
                elif ef == 2:
                    value = ev
            if key is not None:
                out[key] = _parse_feature(value)
    return out


# --------------------------------------------------------------------------------------
# MTLCC

#: Sentinel-2 bands of the three MTLCC resolution groups, in stored order.
MTLCC_X10 = ("B04", "B03", "B02", "B08")
MTLCC_X20 = ("B05", "B06", "B07", "B8A", "B11", "B12")
MTLCC_X60 = ("B01", "B09", "B10")

#: MTLCC raw label ids (classes.txt) -> name, in the order of classes.MTLCC codes 1..17;
#: raw 0 ("unknown", no declared crop) becomes code 18 "Background".
MTLCC_RAW_CLASSES: dict[int, str] = {
    1: "sugar beet",
    2: "summer oat",
    3: "meadow",
    5: "rape",
    8: "hop",
    9: "winter spelt",
    12: "winter triticale",
    13: "beans",
    15: "peas",
    16: "potatoes",
    17: "soybeans",
    19: "asparagus",
    22: "winter wheat",
    23: "winter barley",
    24: "winter rye",
    25: "summer barley",
    26: "maize",
}


def mtlcc_label_lut(max_id: int = 256) -> np.ndarray:
    """Return a lookup table MTLCC raw label id -> model index (or -100 for unknown ids)."""
    code = np.zeros(max_id, dtype=np.int64)
    code[0] = 18
    for i, raw in enumerate(MTLCC_RAW_CLASSES, start=1):
        code[raw] = i
    return MTLCC.code_to_index_lut()[code]


def _decode_array(feat: dict[str, list[Any]], name: str, path: Path) -> np.ndarray:
    try:
        data = feat[f"{name}/data"][0]
        shape = tuple(int(s) for s in feat[f"{name}/shape"])
    except (KeyError, IndexError):
        raise UserError(
            f"MTLCC file {path} has no '{name}/data' + '{name}/shape' features; is it an MTLCC "
            f"tfrecord? Get the data from {MTLCC_URL}"
        ) from None
    arr = np.frombuffer(data, dtype="<i8")
    if arr.size != int(np.prod(shape)):
        raise UserError(f"MTLCC file {path}: {name} holds {arr.size} values, not {shape}")
    return arr.reshape(shape)


def _upsample(x: np.ndarray, size: tuple[int, int], how: str) -> np.ndarray:
    """Upsample ``(T, h, w, C)`` to ``(T, H, W, C)``."""
    t, h, w, c = x.shape
    if (h, w) == size:
        return x
    if how == "nearest" and size[0] % h == 0 and size[1] % w == 0:
        return np.repeat(np.repeat(x, size[0] // h, axis=1), size[1] // w, axis=2)
    tens = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
    mode = "nearest" if how == "nearest" else "bilinear"
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    up = torch.nn.functional.interpolate(tens, size=size, mode=mode, **kwargs)
    return up.permute(0, 2, 3, 1).numpy()


def read_mtlcc_record(
    path: str | os.PathLike[str],
    bands: Sequence[str] = MUNICH.bands,
    upsample: Literal["nearest", "bilinear"] = "nearest",
    year: int | None = None,
    verify: bool = False,
) -> dict[str, np.ndarray]:
    """Read one MTLCC tile (the first Example of a ``<id>.tfrecord.gz``).

    The Example holds int64 arrays as raw bytes: ``x10`` ``(T, 48, 48, 4)`` (B04, B03, B02,
    B08), ``x20`` ``(T, 24, 24, 6)`` (B05, B06, B07, B8A, B11, B12), ``x60`` ``(T, 8, 8, 3)``
    (B01, B09, B10), ``dates/doy`` and ``dates/year`` ``(T,)`` and ``labels`` ``(T, 48, 48)``
    (24-pixel tiles have halved sizes). Time steps padded with ``doy <= 0`` are dropped; the
    20 m and 60 m bands are upsampled to the 10 m grid.

    Args:
        path: The tfrecord(.gz) file.
        bands: Band names to stack, in order.
        upsample: ``"nearest"`` (pixel repeat, keeps values) or ``"bilinear"``.
        year: Year to use when the stored ``dates/year`` is not a year (< 1900).
        verify: Check the record's data checksum too.

    Returns:
        ``{"image": float32 (T, C, H, W), "dates": datetime64[D] (T,), "labels": int64
        (H, W) raw label ids}``.
    """
    path = Path(path)
    groups = {b: ("x10", i) for i, b in enumerate(MTLCC_X10)}
    groups.update({b: ("x20", i) for i, b in enumerate(MTLCC_X20)})
    groups.update({b: ("x60", i) for i, b in enumerate(MTLCC_X60)})
    unknown = [b for b in bands if b not in groups]
    if unknown:
        raise ValueError(f"MTLCC has no bands {unknown}; choose from {sorted(groups)}")
    record = next(iter_tfrecords(path, verify=verify), None)
    if record is None:
        raise UserError(f"MTLCC file {path} holds no record; download it again ({MTLCC_URL})")
    try:
        feat = parse_example(record)
    except ValueError as err:
        raise UserError(
            f"MTLCC file {path} is not a valid tf.train.Example ({err}); download it again "
            f"({MTLCC_URL})"
        ) from None
    doy = np.frombuffer(feat.get("dates/doy", [b""])[0], dtype="<i8")
    years = np.frombuffer(feat.get("dates/year", [b""])[0], dtype="<i8")
    if doy.size == 0 or years.size != doy.size:
        raise UserError(f"MTLCC file {path} has no usable dates/doy + dates/year features")
    keep = doy > 0
    x10 = _decode_array(feat, "x10", path)[keep]
    size = (int(x10.shape[1]), int(x10.shape[2]))
    stacks = {"x10": x10}
    for name in ("x20", "x60"):
        if any(groups[b][0] == name for b in bands):
            stacks[name] = _upsample(_decode_array(feat, name, path)[keep], size, upsample)
    image = np.stack([stacks[groups[b][0]][..., groups[b][1]] for b in bands], axis=1)
    labels = _decode_array(feat, "labels", path)
    labels = labels[keep][0] if keep.any() else labels[0]
    yrs = years[keep].copy()
    if year is not None:
        yrs[yrs < 1900] = year
    if (yrs < 1900).any():
        raise UserError(f"MTLCC file {path}: dates/year {sorted(set(yrs.tolist()))} not years")
    dates = (yrs - 1970).astype("datetime64[Y]").astype("datetime64[D]") + (doy[keep] - 1).astype(
        "timedelta64[D]"
    )
    return {"image": image.astype(np.float32), "dates": dates, "labels": labels}


def _resolve_mtlcc_dir(data_dir: str | os.PathLike[str]) -> Path:
    root = Path(data_dir).expanduser()
    for cand in (
        root,
        root / "480",
        root / "datasets" / "full" / "480",
        root / "data_IJGI18" / "datasets" / "full" / "480",
    ):
        if (cand / "tileids").is_dir():
            return cand
    raise UserError(
        f"MTLCC data not found: expected {root / 'tileids'} (train_fold<k>.tileids, "
        f"test_fold<k>.tileids, eval.tileids) and {root / 'data16'}, {root / 'data17'} with "
        f"<tileid>.tfrecord.gz files. {_MTLCC_HOW} and give its datasets/full/480 (or 240) "
        f"folder as --data-dir (here: {root})."
    )


def _year_dirs(root: Path, years: Sequence[int]) -> dict[int, Path]:
    """Map each year to its folder of tfrecords (``dataset.ini`` sections, else dataYY)."""
    found: dict[int, Path] = {}
    ini = root / "dataset.ini"
    if ini.is_file():
        cfg = configparser.ConfigParser()
        cfg.read(ini)
        for section in cfg.sections():
            if section.isdigit() and "datadir" in cfg[section]:
                found[int(section)] = root / cfg[section]["datadir"]
    out = {}
    for year in years:
        cands = [found[year]] if year in found else []
        cands += [root / f"data{year % 100:02d}", root / "data" / str(year)]
        for cand in cands:
            if cand.is_dir():
                out[year] = cand
                break
    return out


class MtlccDataset(Dataset):
    """MTLCC (Munich) crop-type time series from the published TFRecords (``munich``).

    Expects the layout of ``data_IJGI18.zip`` (``datasets/full/480``, or ``240`` for
    24-pixel tiles)::

        <data_dir>/tileids/{train,test}_fold<k>.tileids, eval.tileids   one tile id a line
        <data_dir>/data16/<id>.tfrecord.gz, data17/<id>.tfrecord.gz      one Example each
        <data_dir>/dataset.ini, classes.txt, geotransforms.csv           (optional here)

    Tiles listed in the split but not downloaded are skipped, as in the original loader.
    Labels map to :data:`senland_geo.classes.MTLCC` indices (raw 0 "unknown" ->
    "Background"; ids not in the 17-crop table -> ignore index -100).

    Args:
        data_dir: The ``480`` (or ``240``) folder (``--data-dir``).
        split: ``"train"``, ``"test"`` or ``"eval"``.
        fold: Fold number of the train/test split files (``train_fold<fold>.tileids``).
        years: Years to read (2016 -> ``data16``, 2017 -> ``data17``).
        bands: Bands to stack (default: the ``munich`` region's B02, B03, B04, B08, B10,
            B11, B12).
        season: Yearly window, e.g. ``(1, 7)`` for January-July.
        temporal: ``"pad"`` or ``"monthly"`` (one composite per month of the tile's year).
        max_len: Pad each series to this length (``temporal="pad"`` only).
        monthly_how: ``"median"`` or ``"nearest"``.
        upsample: How 20 m / 60 m bands reach the 10 m grid: ``"nearest"`` or ``"bilinear"``.
        transforms: Optional callable applied to each sample dict.

    Raises:
        UserError: The folder, split file or data are missing.
    """

    classes = MTLCC
    collate_fn = staticmethod(collate_series)

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: Literal["train", "test", "eval"] = "train",
        fold: int = 0,
        years: Sequence[int] = (2016, 2017),
        bands: Sequence[str] = MUNICH.bands,
        season: Season | None = None,
        temporal: Temporal = "pad",
        max_len: int | None = None,
        monthly_how: Literal["median", "nearest"] = "median",
        upsample: Literal["nearest", "bilinear"] = "nearest",
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if split not in ("train", "test", "eval"):
            raise ValueError(f"MTLCC split {split!r} unknown; use 'train', 'test' or 'eval'")
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample={upsample!r} unknown; use 'nearest' or 'bilinear'")
        _check_options(temporal, monthly_how, max_len)
        all_bands = (*MTLCC_X10, *MTLCC_X20, *MTLCC_X60)
        bad = [b for b in bands if b not in all_bands]
        if bad:
            raise ValueError(f"MTLCC has no bands {bad}; choose from {', '.join(all_bands)}")
        self.root = _resolve_mtlcc_dir(data_dir)
        self.split, self.fold = split, fold
        self.bands = tuple(bands)
        self.season, self.temporal, self.max_len = season, temporal, max_len
        self.monthly_how, self.upsample = monthly_how, upsample
        self.transforms = transforms
        name = "eval.tileids" if split == "eval" else f"{split}_fold{fold}.tileids"
        ids_file = self.root / "tileids" / name
        if not ids_file.is_file():
            have = sorted(p.name for p in (self.root / "tileids").glob("*.tileids"))
            raise UserError(
                f"MTLCC split file {ids_file} not found (have: {', '.join(have) or 'none'}). "
                f"{_MTLCC_HOW} into {self.root} (the folder given as --data-dir)."
            )
        wanted = [ln.strip() for ln in ids_file.read_text().splitlines() if ln.strip()]
        dirs = _year_dirs(self.root, years)
        if not dirs:
            raise UserError(
                f"MTLCC data for years {list(years)} not found: expected folders "
                f"{', '.join(str(self.root / f'data{y % 100:02d}') for y in years)} of "
                f"<tileid>.tfrecord.gz files. {_MTLCC_HOW} into {self.root} (--data-dir)."
            )
        self.files: list[tuple[int, str, Path]] = []
        for year, folder in sorted(dirs.items()):
            for tid in wanted:
                for ext in (".tfrecord.gz", ".tfrecord"):
                    path = folder / f"{tid}{ext}"
                    if path.is_file():
                        self.files.append((year, tid, path))
                        break
        if not self.files:
            raise UserError(
                f"MTLCC data in {self.root} is incomplete: none of the {len(wanted)} tiles of "
                f"{ids_file.name} is in {', '.join(str(d) for d in dirs.values())}. "
                f"{_MTLCC_HOW} into {self.root} (--data-dir)."
            )
        self.ids = [f"{year}/{tid}" for year, tid, _ in self.files]
        self._lut = mtlcc_label_lut()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return the sample dict of tile ``index`` (see the module docstring)."""
        year, tid, path = self.files[index]
        rec = read_mtlcc_record(path, self.bands, self.upsample, year=year)
        raw = rec["labels"]
        mask = np.full(raw.shape, IGNORE_INDEX, dtype=np.int64)
        ok = (raw >= 0) & (raw < len(self._lut))
        mask[ok] = self._lut[raw[ok]]
        first = np.datetime64(f"{year}-01-01", "D")
        sample = _build_sample(
            rec["image"],
            rec["dates"],
            mask,
            f"{year}/{tid}",
            season=self.season,
            temporal=self.temporal,
            max_len=self.max_len,
            monthly_how=self.monthly_how,
            monthly_range=(first, np.datetime64(f"{year}-12-31", "D")),
        )
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample


def open_crop_dataset(region: str, data_dir: str | os.PathLike[str], **kwargs: Any) -> Dataset:
    """Open the crop dataset of a built-in crop region.

    Args:
        region: ``"france-pastis"`` or ``"munich"``.
        data_dir: Where the user put the data (``--data-dir``).
        **kwargs: Passed to :class:`PastisDataset` or :class:`MtlccDataset`.

    Raises:
        UserError: Unknown region or missing data.
    """
    if region == FRANCE_PASTIS.name:
        return PastisDataset(data_dir, **kwargs)
    if region == MUNICH.name:
        return MtlccDataset(data_dir, **kwargs)
    raise UserError(
        f"region {region!r} has no crop dataset reader; use {FRANCE_PASTIS.name!r} or "
        f"{MUNICH.name!r}"
    )
