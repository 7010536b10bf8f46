#!/usr/bin/env bash
# Fresh machine -> land-cover map: set up, then map the embedded Brandenburg sample.
# Usage: scripts/demo.sh [OUT.tif]   (default: ./map.tif)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(scripts/setup.sh | tail -n 1)"
OUT="${1:-map.tif}"
"$VENV/bin/senland-geo" predict --region brandenburg --out "$OUT"
"$VENV/bin/python" - "$OUT" <<'PY'
import sys

import numpy as np
import rasterio

with rasterio.open(sys.argv[1]) as ds:
    codes, counts = np.unique(ds.read(1), return_counts=True)
    cmap = ds.colormap(1)
    print(f"{sys.argv[1]}: {ds.width}x{ds.height} px, {ds.crs}, overviews {ds.overviews(1)}")
    import json

    names = {c["code"]: c["name"] for c in json.loads(ds.tags()["classes"])}
    for code, n in zip(codes, counts):
        print(f"  {code:>3} {names.get(int(code), 'nodata'):<26} {100 * n / counts.sum():5.1f}%")
PY
