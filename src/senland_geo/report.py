"""One self-contained HTML page for a training or prediction run.

``senland-geo report RUN_DIR --out report.html`` reads what ``senland-geo train`` wrote
(``metrics.json``, ``history.json``, ``split.json``, ``checkpoint.pt``), plus a
``map.tif`` and ``bench*.json`` files when they are in the folder, and renders:

- image / truth / prediction side by side for a tile of each area (training and holdout),
  predicted with the checkpoint on the cube it was trained on (``meta["cube"]``), or read
  from ``map.tif`` when the run folder has one;
- the metrics table, per-class IoU and Dice, the confusion matrix;
- the learning curve;
- benchmark charts (one per ``bench*.json``);
- the hardware the run used.

Figures are matplotlib PNGs embedded as base64 ``data:`` URIs, styles are inline, and
there is no script: the page needs no network and opens from a file.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from senland_geo import __version__, plots
from senland_geo.errors import UserError

#: Metrics that benchmark rows may carry, in order of preference for the chart.
BENCH_METRICS: tuple[str, ...] = (
    "images_per_s",
    "images_per_second",
    "train_images_per_second",
    "tiles_per_s",
    "throughput",
    "step_s_median",
    "seconds",
)
#: Row fields that name a benchmark configuration (joined into the bar label).
BENCH_LABELS: tuple[str, ...] = (
    "backend", "model", "task", "mode", "precision", "batch_size", "threads",
)  # fmt: skip


@dataclass
class TileView:
    """One area's tile: RGB composite, truth and prediction as class codes.

    Attributes:
        area: ``training`` or ``holdout`` (or ``map``).
        window: ``(row, col, height, width)`` in cube pixels.
        rgb: Float ``(H, W, 3)`` in 0..1.
        truth: Label codes ``(H, W)`` (0: unlabelled).
        prediction: Predicted codes ``(H, W)`` (0: nodata).
        source: Where the prediction comes from (``checkpoint`` or the map path).
    """

    area: str
    window: tuple[int, int, int, int]
    rgb: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    source: str


# --- reading the run ------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not valid JSON ({exc}); re-run the step that wrote it"
        ) from None


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read the files of a run folder.

    Args:
        run_dir: Folder written by ``senland-geo train`` (or holding a ``map.tif``).

    Returns:
        ``metrics``, ``history``, ``split``, ``meta`` (checkpoint metadata), ``bench``
        (``{file name: rows}``) and ``map`` (path or None); missing parts are None/empty.

    Raises:
        UserError: The folder does not exist or holds none of the files a run writes.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist; pass the --out of 'senland-geo train'")
    data: dict[str, Any] = {"dir": run, "metrics": None, "history": [], "split": None}
    if (run / "metrics.json").is_file():
        data["metrics"] = _read_json(run / "metrics.json")
    if (run / "history.json").is_file():
        data["history"] = _read_json(run / "history.json")
    if (run / "split.json").is_file():
        data["split"] = _read_json(run / "split.json")
    data["meta"] = None
    if (run / "checkpoint.pt").is_file():
        from senland_geo.checkpoint import read_meta

        data["meta"] = read_meta(run / "checkpoint.pt")
    data["bench"] = {}
    data["bench_notes"] = []
    for path in sorted(run.glob("bench*.json")):
        for name, rows, notes in bench_groups(path.name, _read_json(path)):
            data["bench"][name] = rows
            data["bench_notes"] += [f"{path.name}: {n}" for n in notes]
    maps = sorted(run.glob("*.tif"))
    data["map"] = run / "map.tif" if (run / "map.tif").is_file() else (maps[0] if maps else None)
    if data["metrics"] is None and data["meta"] is None and data["map"] is None:
        raise UserError(
            f"{run} holds no metrics.json, checkpoint.pt or map.tif; pass a folder written by "
            "'senland-geo train --out RUN' or one with a map from 'senland-geo predict'"
        )
    return data


def bench_groups(name: str, content: Any) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    """Split a benchmark file into chartable groups of rows.

    Accepts a list of row dicts (``bench_jax.py``) or the dict ``senland-geo bench``
    writes (``rows``, optional ``scaling``, ``hardware`` and ``notes``); rows without an
    engine get the file's ``hardware.engine``.

    Returns:
        ``(group name, rows, notes)`` tuples; groups without rows are left out.
    """
    notes: list[str] = []
    if isinstance(content, dict):
        engine = (content.get("hardware") or {}).get("engine")
        notes = [str(n) for n in content.get("notes") or []]
        groups = [(name, content.get("rows") or content.get("results"))]
        if content.get("scaling"):
            groups.append((f"{name} (thread scaling)", content["scaling"]))
        if groups[0][1] is None:
            groups[0] = (name, [content])
    else:
        engine = None
        groups = [(name, content)]
    out = []
    for group, rows in groups:
        rows = [dict(r) for r in rows or [] if isinstance(r, dict)]
        for r in rows:
            if engine and not (r.get("engine") or r.get("cpu_model") or r.get("gpu_name")):
                r["engine"] = engine
        if rows:
            out.append((group, rows, notes if group == name else []))
    return out


# --- figures --------------------------------------------------------------------------


def code_image(codes: np.ndarray, classes: Any) -> np.ndarray:
    """Colour a code raster with the class table's colours (code 0: white)."""
    lut = np.ones((256, 3), dtype=np.float32)
    for c in classes.classes:
        lut[c.code] = np.asarray(c.rgb, dtype=np.float32) / 255
    return lut[codes.astype(np.uint8)]


def tiles_figure(tiles: Sequence[TileView], classes: Any) -> str:
    """Image / truth / prediction side by side, one row per area, with a legend."""
    rows, present = [], set()
    for tile in tiles:
        r, c, h, w = tile.window
        truth, pred = code_image(tile.truth, classes), code_image(tile.prediction, classes)
        rows.append(
            plots.MapRow(tile.rgb, truth, pred, tile.area, f"rows {r}-{r + h}, cols {c}-{c + w}")
        )
        present |= set(np.unique(tile.truth).tolist()) | set(np.unique(tile.prediction).tolist())
    legend = [(c.color, f"{c.code} {c.name}") for c in classes.classes if c.code in present]
    return plots.data_uri(plots.maps_figure(rows, legend, image_title="image (B04 B03 B02)"))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def bench_metric(rows: Sequence[dict[str, Any]]) -> str | None:
    """The first metric of :data:`BENCH_METRICS` that the rows carry (else a numeric key)."""
    for key in BENCH_METRICS:
        if any(_number(r.get(key)) for r in rows):
            return key
    for key in rows[0] if rows else ():
        if _number(rows[0][key]):
            return key
    return None


def bench_label(row: dict[str, Any]) -> str:
    """A short label for one benchmark row from its configuration fields."""
    parts = []
    for key in BENCH_LABELS:
        if key in row and row[key] is not None:
            value = row[key]
            if key == "batch_size":
                parts.append(f"bs {value}")
            elif key == "threads":
                parts.append(f"{value} threads")
            else:
                parts.append(str(value))
    return " / ".join(parts) or row.get("name", "row")


def bench_engine(rows: Sequence[dict[str, Any]]) -> str:
    """The engines named by benchmark rows (``engine``, ``gpu_name`` or ``cpu_model``)."""
    found = []
    for r in rows:
        hw = r.get("hardware") if isinstance(r.get("hardware"), dict) else {}
        name = r.get("engine") or hw.get("engine") or r.get("gpu_name") or r.get("cpu_model")
        if name and str(name) not in found:
            found.append(str(name))
    return "; ".join(found) or "engine not recorded"


def bench_figure(name: str, rows: Sequence[dict[str, Any]], metric: str) -> str:
    """Bar chart of one benchmark file's rows."""
    import matplotlib.pyplot as plt

    values = [float(r[metric]) if _number(r.get(metric)) else 0.0 for r in rows]
    labels = [bench_label(r) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(rows), 2) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, values, color="#4477aa")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:g}", va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"{name} ({bench_engine(rows)})", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return plots.data_uri(fig)


# --- tiles: truth and prediction ------------------------------------------------------


def _best_window(
    labels: np.ndarray, box_px: tuple[int, int, int, int], size: int
) -> tuple[int, int, int, int]:
    """The ``size`` window inside ``box_px`` (r0, c0, r1, c1) with the most labelled pixels."""
    r0, c0, r1, c1 = box_px
    h, w = min(size, r1 - r0), min(size, c1 - c0)
    best, best_count = (r0, c0, h, w), -1
    step = max(size // 2, 1)
    rows = list(range(r0, max(r1 - h, r0) + 1, step)) or [r0]
    cols = list(range(c0, max(c1 - w, c0) + 1, step)) or [c0]
    for r in rows:
        for c in cols:
            count = int((labels[r : r + h, c : c + w] != 0).sum())
            if count > best_count:
                best, best_count = (r, c, h, w), count
    return best


def _box_to_pixels(bounds: Sequence[float], grid: dict[str, Any]) -> tuple[int, int, int, int]:
    minx, miny, maxx, maxy = bounds
    gminx, _, _, gmaxy = grid["bounds"]
    res = grid["res"]
    height, width = grid["shape"]
    r0 = max(0, round((gmaxy - maxy) / res))
    r1 = min(height, round((gmaxy - miny) / res))
    c0 = max(0, round((minx - gminx) / res))
    c1 = min(width, round((maxx - gminx) / res))
    return r0, c0, r1, c1


def _predict_window(model: Any, meta: dict[str, Any], block: np.ndarray) -> np.ndarray:
    """Class codes for a ``(T, C, H, W)`` block (uint16) with a loaded checkpoint model."""
    import torch

    from senland_geo.checkpoint import class_table

    norm = meta["normalization"]
    mean = np.asarray(norm["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(norm["std"], dtype=np.float32)[:, None, None]
    x = (block.astype(np.float32) - mean) / std  # z-score per band, as in training
    if not meta.get("temporal", False):
        x = x[0] if x.shape[0] == 1 else x.mean(0)
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32  # encoders downsample by 32
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    x = np.pad(x, pad, mode="reflect" if min(h, w) > max(ph, pw) else "edge")
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(x))[None])
        if isinstance(logits, list | tuple):
            logits = logits[-1]
        index = logits[0].float().argmax(0).numpy()[:h, :w]
    codes = class_table(meta).index_to_code_lut()[index]
    codes[~(block != 0).any(axis=(0, 1))] = 0
    return codes


def make_tiles(
    run: dict[str, Any], cube_path: str | Path | None = None, tile: int = 256
) -> tuple[list[TileView], str]:
    """Pick one tile per area and return them with a note on where the data came from.

    Predictions come from ``map.tif`` when the run has one, otherwise from the
    checkpoint run on the cube recorded in its metadata (or ``cube_path``).

    Args:
        run: From :func:`load_run`.
        cube_path: Override of the cube recorded in the checkpoint.
        tile: Tile side in pixels.

    Returns:
        ``(tiles, note)``; ``tiles`` is empty (and ``note`` says why) when no cube is found.
    """
    from senland_geo import store

    meta = run["meta"] or {}
    cube = Path(cube_path) if cube_path else (Path(meta["cube"]) if meta.get("cube") else None)
    if cube is None or not cube.exists():
        return [], (
            f"cube {cube} not found, so no tiles are shown; pass --cube PATH "
            "(the cube the run was trained or predicted on)"
            if cube
            else "the run records no cube; pass --cube PATH to show tiles"
        )
    ds = store.open_cube(cube)
    grid = store.grid_of(ds)
    bands = store.band_names(ds)
    if "labels" in ds:
        labels = np.asarray(ds["labels"].values)
    else:
        labels = np.zeros(grid["shape"], dtype=np.uint8)
    height, width = grid["shape"]
    areas: list[tuple[str, tuple[int, int, int, int]]] = []
    if run["split"]:
        for name, key in (("training area", "train"), ("holdout area", "test")):
            boxes = run["split"].get(key) or []
            if boxes:
                box_px = _box_to_pixels(boxes[0], grid)
                if box_px[2] > box_px[0] and box_px[3] > box_px[1]:
                    areas.append((name, box_px))
    if not areas:
        areas.append(("whole cube", (0, 0, height, width)))
    rgb_index = [bands.index(b) for b in ("B04", "B03", "B02") if b in bands]
    model = None
    if run["map"] is None:
        from senland_geo.checkpoint import load_checkpoint

        model, meta = load_checkpoint(run["dir"] / "checkpoint.pt")
        band_index = [bands.index(b) for b in meta["bands"]]
        source = f"checkpoint {run['dir'] / 'checkpoint.pt'} on cube {cube}"
    else:
        source = f"map {run['map']} over cube {cube}"
    views = []
    for name, box_px in areas:
        r, c, h, w = _best_window(labels, box_px, tile)
        block = np.asarray(ds["reflectance"][:, :, r : r + h, c : c + w].values)
        if len(rgb_index) == 3:
            rgb = plots.stretch_rgb(np.median(block[:, rgb_index], axis=0))
        else:
            rgb = np.zeros((h, w, 3), dtype=np.float32)
        if model is not None:
            prediction = _predict_window(model, meta, block[:, band_index])
        else:
            prediction = _read_map_window(run["map"], grid, (r, c, h, w))
        views.append(TileView(name, (r, c, h, w), rgb, labels[r : r + h, c : c + w], prediction,
                              source))  # fmt: skip
    return views, f"Predictions from {source}."


def _read_map_window(
    path: Path, grid: dict[str, Any], window: tuple[int, int, int, int]
) -> np.ndarray:
    """Read the part of a map that covers a cube window (nearest, 0 outside the map)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    r, c, h, w = window
    from affine import Affine

    transform = grid["transform"] @ Affine.translation(c, r)
    out = np.zeros((h, w), dtype=np.uint8)
    with rasterio.open(path) as src:
        reproject(
            source=rasterio.band(src, 1),
            destination=out,
            dst_transform=transform,
            dst_crs=grid["crs"],
            dst_nodata=0,
            resampling=Resampling.nearest,
        )
    return out


# --- HTML -----------------------------------------------------------------------------

CSS = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1d2b36; background: #ffffff; }
h1 { border-bottom: 4px solid #2e7d32; padding-bottom: 6px; }
h2 { color: #2e7d32; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #c9d3da; padding: 4px 10px; text-align: left; font-size: 14px; }
th { background: #e8f1e9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #555;
          vertical-align: middle; margin-right: 6px; }
.note { color: #5a6b78; font-size: 13px; }
img { max-width: 100%; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _table(rows: Sequence[tuple[Any, Any]], header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><th>{_e(k)}</th><td class='num'>{_e(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{head}{body}</table>"


def _img(uri: str, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='{uri}'>"


def render_html(run: dict[str, Any], tiles: Sequence[TileView], tiles_note: str) -> str:
    """Render the report page from a loaded run and its tiles."""
    from senland_geo.checkpoint import class_table
    from senland_geo.classes import TABLES, WORLDCOVER

    metrics = run["metrics"] or {}
    meta = run["meta"] or {}
    if meta.get("classes"):
        classes = class_table(meta)
    else:
        classes = TABLES.get(metrics.get("class_table", ""), WORLDCOVER)
    title = f"senland-geo report: {run['dir'].name}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        "<p class='note'>"
        f"Run folder {_e(run['dir'])}; model {_e(meta.get('model', 'unknown'))}; "
        f"cube {_e(meta.get('cube', 'unknown'))}; written by senland-geo {_e(__version__)} "
        f"on {_e(dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC'))}.</p>",
    ]
    parts.append("<h2 id='tiles'>Image, truth and prediction</h2>")
    if tiles:
        parts.append(f"<p class='note'>{_e(tiles_note)} One tile per area, chosen for the most "
                     "labelled pixels; white is unlabelled / nodata.</p>")  # fmt: skip
        parts.append(_img(tiles_figure(tiles, classes), "image, truth and prediction"))
    else:
        parts.append(f"<p class='note'>{_e(tiles_note)}</p>")
    if metrics:
        parts.append("<h2 id='metrics'>Metrics</h2>")
        rows = [
            ("overall accuracy", metrics.get("overall_accuracy")),
            ("mean IoU", metrics.get("miou")),
            ("macro Dice", metrics.get("macro_dice")),
            ("evaluated pixels", metrics.get("pixels")),
            ("training seconds", metrics.get("train_seconds")),
            ("training images / s", metrics.get("train_images_per_second")),
        ]
        parts.append(_table([r for r in rows if r[1] is not None], ("metric", "value")))
        if metrics.get("split"):
            parts.append(f"<p class='note'>Split: {_e(metrics['split'])}</p>")
        per_class = metrics.get("per_class") or []
        if per_class:
            parts.append("<h2 id='per-class'>Per-class IoU</h2>")
            colors = {c.code: c.color for c in classes.classes}
            body = "".join(
                "<tr>"
                f"<td><span class='swatch' style='background:{colors.get(c['code'], '#fff')}'>"
                f"</span>{_e(c['code'])} {_e(c['name'])}</td>"
                f"<td class='num'>{_e(_fmt(c.get('iou')))}</td>"
                f"<td class='num'>{_e(_fmt(c.get('dice')))}</td>"
                f"<td class='num'>{_e(c.get('support', 0))}</td></tr>"
                for c in per_class
            )
            parts.append(
                "<table><tr><th>class</th><th>IoU</th><th>Dice</th><th>truth pixels</th></tr>"
                f"{body}</table>"
            )
            if any(c.get("iou") is not None for c in per_class):
                fig = plots.per_class_figure(per_class, miou=metrics.get("miou"), classes=classes)
                parts.append(_img(plots.data_uri(fig), "per-class IoU"))
        if metrics.get("confusion"):
            parts.append("<h2 id='confusion'>Confusion matrix</h2>")
            names = [c["name"] for c in per_class] or classes.names
            fig = plots.confusion_figure(metrics["confusion"], names)
            parts.append(_img(plots.data_uri(fig), "confusion matrix"))
    if run["history"]:
        parts.append("<h2 id='learning-curves'>Learning curves</h2>")
        fig = plots.learning_curves_figure(run["history"])
        parts.append(_img(plots.data_uri(fig), "learning curves"))
    if run["bench"]:
        parts.append("<h2 id='benchmarks'>Benchmarks</h2>")
        for name, rows in run["bench"].items():
            metric = bench_metric(rows)
            if metric is None:
                parts.append(f"<p class='note'>{_e(name)}: no numeric column to chart.</p>")
                continue
            parts.append(_img(bench_figure(name, rows, metric), f"benchmark {name}"))
        for note in run.get("bench_notes", []):
            parts.append(f"<p class='note'>{_e(note)}</p>")
    hardware = metrics.get("hardware") or meta.get("hardware")
    if hardware:
        parts.append("<h2 id='hardware'>Hardware</h2>")
        parts.append(_table(sorted(hardware.items()), ("field", "value")))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    cube: str | Path | None = None,
    tile: int = 256,
) -> Path:
    """Write the self-contained HTML report of a run.

    Args:
        run_dir: Folder written by ``senland-geo train`` (or holding a ``map.tif``).
        out: Destination ``.html`` (default: ``RUN_DIR/report.html``).
        cube: Cube to show tiles from (default: the one recorded in the checkpoint).
        tile: Tile side in pixels.

    Returns:
        The report path.

    Raises:
        UserError: The run folder is missing or empty, or the output folder is missing.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    run = load_run(run_dir)
    out = Path(out) if out else run["dir"] / "report.html"
    if not out.parent.is_dir():
        raise UserError(
            f"output folder {out.parent} does not exist; create it or pick another --out"
        )
    tiles, note = make_tiles(run, cube, tile)
    page = render_html(run, tiles, note)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
