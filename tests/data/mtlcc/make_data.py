"""Write a tiny, format-faithful copy of MTLCC (Russwurm & Koerner 2018) into a folder.

Follows ``data_IJGI18/datasets/full/480`` of the published archive (github.com/MarcCoru/MTLCC)::

    tileids/train_fold0.tileids, test_fold0.tileids, eval.tileids   one tile id a line
    data16/<id>.tfrecord.gz, data17/<id>.tfrecord.gz   gzipped TFRecord, one tf.train.Example
    dataset.ini, classes.txt ("id|name"), geotransforms.csv

Each Example stores int64 arrays as raw little-endian bytes (BytesList) plus their shapes
(Int64List), as MTLCC's S2parser.write does: ``x10/data`` (T, 48, 48, 4) bands B04 B03 B02
B08; ``x20/data`` (T, 24, 24, 6) B05 B06 B07 B8A B11 B12; ``x60/data`` (T, 8, 8, 3) B01 B09
B10; ``dates/doy`` and ``dates/year`` (T,); ``labels/data`` (T, 48, 48) raw class ids. Series
are padded at the end with ``doy = 0`` steps. The TFRecord framing and protobuf encoding are
written here by hand (no tensorflow), independently of the reader in senland_geo.cropdata.

Tiles 1..5: train_fold0 = 1 2 3, test_fold0 = 4, eval = 5; 2017 lacks tile 3; tile 2 of
2017 stores year 0 (some copies of the data do) so the reader must take the year from the
folder name.

Usage: python make_data.py OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import struct
from pathlib import Path

import numpy as np

PIX = 48
RAW_CLASS_IDS = [0, 1, 2, 3, 5, 8, 9, 12, 13, 15, 16, 17, 19, 22, 23, 24, 25, 26]
CLASS_NAMES = [
    "unknown", "sugar beet", "summer oat", "meadow", "rape", "hop", "winter spelt",
    "winter triticale", "beans", "peas", "potatoes", "soybeans", "asparagus", "winter wheat",
    "winter barley", "winter rye", "summer barley", "maize",
]  # fmt: skip
SPLITS = {"train_fold0": [1, 2, 3], "test_fold0": [4], "eval": [5]}
#: (year, tile) -> observation dates (month, day); padded steps are appended.
DATES: dict[tuple[int, int], list[tuple[int, int]]] = {
    (2016, 1): [(1, 3), (2, 12), (4, 20), (6, 1), (8, 9)],
    (2016, 2): [(3, 11), (5, 5), (7, 21), (9, 30)],
    (2016, 3): [(1, 3), (1, 21), (6, 10), (10, 2), (12, 20), (12, 30)],
    (2016, 4): [(2, 12), (3, 11), (7, 7), (8, 9)],
    (2016, 5): [(4, 20), (5, 5), (11, 11)],
    (2017, 1): [(1, 15), (3, 3), (3, 28), (5, 10), (8, 18), (9, 2)],
    (2017, 2): [(2, 1), (4, 4), (6, 6), (8, 8)],
    (2017, 4): [(1, 20), (4, 9), (7, 30)],
    (2017, 5): [(3, 3), (6, 12), (9, 1), (10, 15), (11, 30)],
}
N_PAD = 2
YEAR_ZERO = {(2017, 2)}

# ---- minimal protobuf + TFRecord writer ------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    return _len_field(1, _len_field(1, value))  # Feature.bytes_list{value}


def _int64_feature(values: list[int]) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _len_field(3, _len_field(1, packed))  # Feature.int64_list{packed value}


def encode_example(features: dict[str, bytes]) -> bytes:
    """Serialize a tf.train.Example from already-encoded Feature messages."""
    entries = b"".join(
        _len_field(1, _len_field(1, key.encode()) + _len_field(2, feat))
        for key, feat in features.items()
    )
    return _len_field(1, entries)


def _crc32c(data: bytes) -> int:
    try:
        import google_crc32c

        return int(google_crc32c.value(data))
    except ImportError:
        crc = 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(record: bytes) -> bytes:
    """Frame one record: uint64 length, masked crc, data, masked crc."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked(length)) + record + struct.pack("<I", _masked(record))


# ---- data ------------------------------------------------------------------------------


def label_map(tile: int) -> np.ndarray:
    """Raw MTLCC label ids of a tile: 18 vertical stripes cycling through the class ids."""
    cols = (np.arange(PIX) * 18 // PIX + tile) % 18
    ids = np.array(RAW_CLASS_IDS, dtype=np.int64)[cols]
    return np.repeat(ids[None, :], PIX, axis=0)


def tile_arrays(year: int, tile: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays one tile stores (already padded); seeded by ``(seed, year, tile)``."""
    rng = np.random.default_rng([seed, year, tile])
    days = DATES[(year, tile)]
    t = len(days) + N_PAD
    doy = np.zeros(t, np.int64)
    doy[: len(days)] = [dt.date(year, m, d).timetuple().tm_yday for m, d in days]
    years = np.zeros(t, np.int64)
    years[: len(days)] = 0 if (year, tile) in YEAR_ZERO else year
    x10 = rng.integers(1, 10_000, size=(t, PIX, PIX, 4), dtype=np.int64)
    x20 = rng.integers(1, 10_000, size=(t, PIX // 2, PIX // 2, 6), dtype=np.int64)
    x60 = rng.integers(1, 10_000, size=(t, PIX // 6, PIX // 6, 3), dtype=np.int64)
    for arr in (x10, x20, x60):
        arr[len(days) :] = 0
    labels = np.repeat(label_map(tile)[None], t, axis=0)
    return {"x10": x10, "x20": x20, "x60": x60, "doy": doy, "year": years, "labels": labels}


def write_tile(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one tile as MTLCC's S2parser.write does, gzip-compressed."""
    feats: dict[str, bytes] = {}
    for name in ("x10", "x20", "x60", "labels"):
        arr = arrays[name].astype("<i8")
        feats[f"{name}/data"] = _bytes_feature(arr.tobytes())
        feats[f"{name}/shape"] = _int64_feature(list(arr.shape))
    feats["dates/doy"] = _bytes_feature(arrays["doy"].astype("<i8").tobytes())
    feats["dates/year"] = _bytes_feature(arrays["year"].astype("<i8").tobytes())
    feats["dates/shape"] = _int64_feature([len(arrays["doy"])])
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(tfrecord_frame(encode_example(feats)))


def make(out: Path, seed: int = 0) -> Path:
    """Write the fixture into ``out`` (created) and return ``out``."""
    out = Path(out)
    (out / "tileids").mkdir(parents=True, exist_ok=True)
    for name, ids in SPLITS.items():
        (out / "tileids" / f"{name}.tileids").write_text("".join(f"{i}\n" for i in ids))
    for year in (2016, 2017):
        folder = out / f"data{year % 100}"
        folder.mkdir(exist_ok=True)
        for (y, tile), _ in sorted(DATES.items()):
            if y == year:
                write_tile(folder / f"{tile}.tfrecord.gz", tile_arrays(year, tile, seed))
    (out / "classes.txt").write_text(
        "".join(f"{i}|{n}\n" for i, n in zip(RAW_CLASS_IDS, CLASS_NAMES, strict=True))
    )
    (out / "dataset.ini").write_text(
        "".join(
            f"[{y}]\ndatadir=data{y % 100}\npix10={PIX}\nnobs=8\nnbands10=4\nnbands20=6\n"
            f"nbands60=3\ntiletable=tiles480\n\n"
            for y in (2016, 2017)
        )
    )
    (out / "geotransforms.csv").write_text(
        "".join(f"{t},{690000 + 480 * t},10,0,{5340000},0,-10,32632\n" for t in range(1, 6))
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make(args.out, args.seed))


if __name__ == "__main__":
    main()
