"""Write a tiny, format-faithful copy of PASTIS (Zenodo record 5012942) into a folder.

Layout and dtypes follow the published ``PASTIS.zip``::

    metadata.geojson           FeatureCollection, CRS EPSG:2154; properties ID_PATCH, N_Parcel,
                               Parcel_Cover, TILE, Fold (1..5), dates-S2/-S1A/-S1D as
                               {"0": yyyymmdd, ...}
    NORM_S2_patch.json         {"Fold_k": {"mean": [10 floats], "std": [10 floats]}}
    DATA_S2/S2_<id>.npy        (T, 10, H, W) int16, bands B02 B03 B04 B05 B06 B07 B08 B8A B11 B12
    ANNOTATIONS/TARGET_<id>.npy (3, H, W): semantic label (0 background, 1..18 crops,
                               19 void) in channel 0

Six patches with 4 to 7 dates each (the real data has 38 to 61), 128 x 128 px by default.
Values are drawn from a seeded generator, so tests can check exact numbers.

Usage: python make_data.py OUT_DIR [--size 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: (ID_PATCH, Fold, TILE, S2 dates)
PATCHES: list[tuple[int, int, str, list[int]]] = [
    (10000, 1, "t30uxv", [20180924, 20181029, 20190115, 20190214, 20190320, 20190705, 20190815]),
    (10001, 2, "t30uxv", [20181004, 20190110, 20190412, 20190610, 20191020]),
    (20000, 3, "t31tfj", [20180919, 20190103, 20190125, 20190522, 20190731, 20190901]),
    (30000, 4, "t31tfm", [20181115, 20190228, 20190630, 20190930]),
    (40000, 5, "t32ulu", [20180927, 20181201, 20190301, 20190401, 20190511]),
    (40001, 1, "t32ulu", [20190105, 20190207, 20190310, 20190703, 20190719, 20191012]),
]
N_BANDS = 10


def semantic_target(pid: int, size: int) -> np.ndarray:
    """Semantic labels of a patch: 20 horizontal stripes 0..19, shifted by the patch id."""
    rows = (np.arange(size) * 20 // size + pid) % 20
    return np.repeat(rows[:, None], size, axis=1).astype(np.uint8)


def make(out: Path, size: int = 128, seed: int = 0) -> Path:
    """Write the fixture into ``out`` (created) and return ``out``."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "DATA_S2").mkdir(parents=True, exist_ok=True)
    (out / "ANNOTATIONS").mkdir(exist_ok=True)
    features = []
    for n, (pid, fold, tile, dates) in enumerate(PATCHES):
        t = len(dates)
        s2 = rng.integers(0, 10_000, size=(t, N_BANDS, size, size), dtype=np.int16)
        np.save(out / "DATA_S2" / f"S2_{pid}.npy", s2)
        sem = semantic_target(pid, size)
        instances = (np.arange(size * size).reshape(size, size) // (size * 8) + 1) * (sem > 0)
        target = np.stack([sem, instances % 256, sem]).astype(np.uint8)
        np.save(out / "ANNOTATIONS" / f"TARGET_{pid}.npy", target)
        x0, y0 = 600_000.0 + 2_000 * n, 6_800_000.0
        side = 1280.0
        features.append(
            {
                "type": "Feature",
                "id": str(pid),
                "properties": {
                    "ID_PATCH": pid,
                    "N_Parcel": int(np.unique(instances).size - 1),
                    "Parcel_Cover": float(np.mean(sem > 0)),
                    "TILE": tile,
                    "Fold": fold,
                    "dates-S2": {str(i): d for i, d in enumerate(dates)},
                    "dates-S1A": {str(i): d for i, d in enumerate(dates)},
                    "dates-S1D": {str(i): d for i, d in enumerate(dates)},
                },
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [x0, y0],
                            [x0 + side, y0],
                            [x0 + side, y0 - side],
                            [x0, y0 - side],
                            [x0, y0],
                        ]
                    ],
                },
            }
        )
    meta = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}},
        "features": features,
    }
    (out / "metadata.geojson").write_text(json.dumps(meta))
    norm = {
        f"Fold_{k}": {
            "mean": [1000.0 * k + b for b in range(N_BANDS)],
            "std": [100.0 * k + 10 * b for b in range(1, N_BANDS + 1)],
        }
        for k in range(1, 6)
    }
    (out / "NORM_S2_patch.json").write_text(json.dumps(norm, indent=4))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make(args.out, args.size, args.seed))


if __name__ == "__main__":
    main()
