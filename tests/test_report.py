"""`senland-geo report`: a self-contained HTML page, checked for content and in Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from senland_geo.errors import UserError
from senland_geo.report import load_run, write_report

BENCH_ROWS = [
    {"backend": "cpu", "model": "unet-resnet34-slim", "mode": "train", "batch_size": 8,
     "images_per_s": 5.5, "engine": "CPU test-engine (2 threads)"},
    {"backend": "cpu", "model": "unet-resnet34-slim", "mode": "train", "batch_size": 16,
     "images_per_s": 7.25, "engine": "CPU test-engine (2 threads)"},
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny training run with a benchmark file added."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_checkpoint.parent, run)
    (run / "bench-cpu.json").write_text(json.dumps(BENCH_ROWS))
    return run


@pytest.fixture(scope="module")
def report_html(run_dir: Path) -> Path:
    return write_report(run_dir, run_dir.parent / "report.html")


def _images(page: str) -> list[bytes]:
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return [base64.b64decode(u) for u in uris]


def test_report_is_self_contained_with_every_section(run_dir: Path, report_html: Path) -> None:
    page = report_html.read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for anchor in ("tiles", "metrics", "per-class", "confusion", "learning-curves", "benchmarks",
                   "hardware"):  # fmt: skip
        assert f"id='{anchor}'" in page, anchor
    # No external resource of any kind: everything is inline.
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//)", page)
    assert "<script" not in page and "<link" not in page
    images = _images(page)
    assert len(images) == 5  # tiles, per-class bars, confusion, learning curve, 1 bench chart
    assert all(img.startswith(b"\x89PNG") for img in images)
    # Real values from the run, as written by train().
    assert f"{metrics['miou']:.4f}" in page
    assert f"{metrics['overall_accuracy']:.4f}" in page
    assert metrics["hardware"]["engine"] in page
    supported = [c for c in metrics["per_class"] if c["support"] > 0]
    for c in supported:
        assert f"{c['code']} {c['name']}" in page


def test_tiles_show_truth_from_the_cube_and_a_prediction(run_dir: Path) -> None:
    from senland_geo import store
    from senland_geo.report import make_tiles

    run = load_run(run_dir)
    tiles, note = make_tiles(run, tile=128)
    assert [t.area for t in tiles] == ["training area", "holdout area"]
    ds = store.open_cube(run["meta"]["cube"])
    split = json.loads((run_dir / "split.json").read_text())
    minx, _, _, maxy = ds.rio.bounds()
    for tile, box in zip(tiles, (split["train"][0], split["test"][0]), strict=True):
        r, c, h, w = tile.window
        assert (h, w) == (128, 128)
        # the tile lies inside its area of the split
        assert box[0] <= minx + c * 10 and minx + (c + w) * 10 <= box[2]
        assert maxy - (r + h) * 10 >= box[1] and maxy - r * 10 <= box[3]
        np.testing.assert_array_equal(tile.truth, ds["labels"].values[r : r + h, c : c + w])
        assert (tile.truth != 0).mean() > 0.3  # picked for its labelled pixels
        codes = set(np.unique(tile.prediction).tolist())
        assert codes <= {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100} and codes - {0}
        assert tile.rgb.shape == (128, 128, 3) and 0 <= tile.rgb.min() and tile.rgb.max() <= 1
        assert tile.rgb.std() > 0.05
    assert "checkpoint" in note


def test_a_map_in_the_run_is_used_for_the_prediction(run_dir: Path, tmp_path: Path) -> None:
    import rasterio

    from senland_geo import store
    from senland_geo.report import make_tiles

    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy)
    ds = store.open_cube(load_run(run_copy)["meta"]["cube"])
    truth = ds["labels"].values
    grid = store.grid_of(ds)
    height, width = truth.shape
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                   crs=grid["crs"], transform=grid["transform"], nodata=0)  # fmt: skip
    with rasterio.open(run_copy / "map.tif", "w", **profile) as dst:
        dst.write(truth, 1)  # a "perfect" map: prediction must equal truth
    tiles, note = make_tiles(load_run(run_copy), tile=96)
    assert "map" in note
    for tile in tiles:
        np.testing.assert_array_equal(tile.prediction, tile.truth)


def test_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(UserError, match="holds no metrics.json"):
        load_run(tmp_path)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = (
        "Chromium not found; install it with scripts/install-test-services.sh "
        "(Debian: apt-get install -y chromium)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {message}")
    pytest.skip(message)


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path) -> None:
    from PIL import Image

    chromium = _chromium()
    url = report_html.resolve().as_uri()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    # The DOM as the browser built it: every section and every embedded figure decoded.
    assert "senland-geo report: run" in dom.stdout
    assert dom.stdout.count("<h2") == 7
    assert dom.stdout.count("data:image/png;base64,") == 5
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,2000", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    logs = dom.stderr + result.stderr
    # Console errors and failed loads are logged as CONSOLE / net::ERR_ lines.
    console = [line for line in logs.splitlines() if "CONSOLE" in line]
    assert not console, console
    assert "net::ERR_" not in logs and "Failed to load resource" not in logs
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (2000, 1280, 3)
    assert image.std() > 20
    colours = np.unique(image.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200  # photo-like tiles and class colours, not a blank page
    non_white = (image < 245).any(axis=2).mean()
    assert 0.1 < non_white < 0.95


def test_cli_report_writes_the_page(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from senland_geo.cli import cli

    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(out), "--tile", "64"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    page = out.read_text()
    assert len(_images(page)) == 5
    assert out.stat().st_size > 10_000


def test_bench_json_of_the_bench_command_is_charted(tmp_path: Path) -> None:
    from senland_geo.report import bench_groups, bench_label, bench_metric, render_html

    bench = {
        "hardware": {"engine": "CPU Example (2 threads)"},
        "rows": [
            {"backend": "cpu", "model": "unet-gn", "task": "train", "precision": "fp32",
             "batch_size": 16, "threads": 2, "images_per_s": 12.5},
            {"backend": "cpu", "model": "unet-gn", "task": "infer", "precision": "fp32",
             "batch_size": 16, "threads": 2, "images_per_s": 40.0},
        ],
        "scaling": [
            {"model": "unet-gn", "task": "train", "threads": t, "images_per_s": v}
            for t, v in ((1, 7.0), (2, 12.5))
        ],
        "notes": ["load average 9.1 at start on 2 CPUs: the machine is shared"],
    }  # fmt: skip
    groups = bench_groups("bench.json", bench)
    assert [g[0] for g in groups] == ["bench.json", "bench.json (thread scaling)"]
    rows = groups[0][1]
    assert bench_metric(rows) == "images_per_s"
    assert bench_label(rows[0]) == "cpu / unet-gn / train / fp32 / bs 16 / 2 threads"
    assert all(r["engine"] == "CPU Example (2 threads)" for g in groups for r in g[1])
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "metrics.json").write_text(json.dumps({"miou": 0.5, "per_class": []}))
    run = load_run(tmp_path)
    page = render_html(run, [], "no tiles")
    assert len(_images(page)) == 2
    assert "the machine is shared" in page and "0.5000" in page
