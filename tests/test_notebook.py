"""The example notebook and scripts run top to bottom against the embedded sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def _text_outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def test_cubes_notebook_runs(brandenburg_cube: Path, tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    # ipykernel provides the native "python3" kernel (this interpreter) when no spec exists.
    assert "python3" in specs or KernelSpecManager().ensure_native_kernel
    monkeypatch.setenv("SENLAND_CUBE", str(brandenburg_cube))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(EXAMPLES / "cubes.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    text = _text_outputs(nb)
    assert f"cube: {brandenburg_cube}" in text
    assert "dashboard: http://" in text
    assert "CRS: EPSG:32633" in text
    assert "1 date(s) in DJF: ['2017-02-16']" in text
    assert "image (4, 10, 64, 64) torch.float32  mask (4, 64, 64) torch.int64" in text
    assert "'Cropland': 112837" in text  # real label counts of the sample
    figures = [
        o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(figures) == 3  # composite + labels, seasonal NDVI, patches


def test_dask_ndvi_script(brandenburg_cube: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "dask_ndvi.py"), str(brandenburg_cube)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert float(lines["Tree cover"]) > float(lines["Built-up"])  # NDVI: forest > town
    assert "dashboard" in lines


def test_example_scripts_compile_and_explain_themselves() -> None:
    import ast

    scripts = sorted(EXAMPLES.glob("*.py"))
    assert {p.name for p in scripts} >= {"dask_ndvi.py", "quickstart.py"}
    for path in scripts:
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} needs a module docstring"
