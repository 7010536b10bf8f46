"""The cube-build benchmark: a ``--quick`` run prints one JSON object with finite figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cube.py"

SIZE_KEYS = {
    "grid_px",
    "decoded_mb",
    "raw_mb_s",
    "build_mb_s",
    "ratio_build_over_raw",
    "peak_rss_build_mib",
    "peak_rss_raw_mib",
    "stored_pixels_match_raw",
    "cpu_ratio_raw_over_build",
    "store_mb",
}


def _positive_finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_run_prints_json_with_positive_finite_figures(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for key in (
        "throughput_ratio",
        "rss_ratio_x4_over_base",
        "throughput_target_met",
        "rss_target_met",
        "load_average_start",
        "load_average_end",
        "hardware",
        "sizes",
    ):
        assert key in result, key
    assert set(result["sizes"]) == {"base", "x4"}
    base, big = result["sizes"]["base"], result["sizes"]["x4"]
    for size in (base, big):
        assert SIZE_KEYS <= set(size), SIZE_KEYS - set(size)
        for key in SIZE_KEYS - {"grid_px", "stored_pixels_match_raw"}:
            assert _positive_finite(size[key]), (key, size[key])
        assert size["stored_pixels_match_raw"] is True  # both paths decoded the same pixels
        # LZ4 by default: the store holds 10 of the 11 decoded bands, compressed
        assert size["store_mb"] < 10 / 11 * size["decoded_mb"]
    assert result["compression"] == "lz4"
    assert big["grid_px"][0] == 2 * base["grid_px"][0]
    assert big["decoded_mb"] == pytest.approx(4 * base["decoded_mb"], rel=0.01)
    assert _positive_finite(result["throughput_ratio"])
    assert _positive_finite(result["rss_ratio_x4_over_base"])
    assert len(result["load_average_start"]) == 3
    assert result["hardware"]["cpu_model"]
