"""The example region plugin and `senland-geo new-region`: installed, listed, built.

The distributions are installed with ``pip install --no-deps --target`` into temporary
folders and the CLI runs in subprocesses with those folders on ``PYTHONPATH``: entry
points are discovered exactly as for an installed plugin, and the shared environment is
never modified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from senland_geo.cli import cli
from senland_geo.errors import UserError
from senland_geo.scaffold import scaffold_region, utm_epsg

EXAMPLE = Path(__file__).parents[1] / "plugins" / "senland-geo-region-example"


def _pip_install_target(source: Path, work: Path) -> Path:
    """Install a copy of ``source`` (no build files left in the repo) into a target dir."""
    copy = work / "src-copy"
    shutil.copytree(
        source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(target), str(copy)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment with the example plugin and a scaffolded plugin on PYTHONPATH."""
    work = tmp_path_factory.mktemp("plugins")
    example = _pip_install_target(EXAMPLE, work / "example")
    scaffolded = scaffold_region("my-area", work)
    mine = _pip_install_target(scaffolded, work / "mine")
    paths = [str(example), str(mine), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "senland_geo", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_installed_plugins_are_listed(installed: dict[str, str]) -> None:
    result = _cli(installed, "regions")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "brandenburg" in lines  # built-ins still there
    assert lines["brandenburg-mini"].split()[1:3] == ["EPSG:32633", "brandenburg-sample"]
    assert lines["saint-louis"].split()[1:3] == ["EPSG:32628", "earth-search"]
    assert lines["my-area"].split()[1:3] == ["EPSG:32633", "brandenburg-sample"]
    assert "BROKEN" not in result.stdout


def test_example_region_cube_builds_offline(installed: dict[str, str], tmp_path: Path) -> None:
    from senland_geo.store import open_cube

    out = tmp_path / "mini.zarr"
    result = _cli(installed, "cube", "--region", "brandenburg-mini", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    ds = open_cube(out)
    assert (ds.sizes["y"], ds.sizes["x"]) == (512, 512)
    assert ds.rio.bounds() == (335120.0, 5814360.0, 340240.0, 5819480.0)
    assert ds.rio.crs.to_epsg() == 32633
    labels = np.asarray(ds["labels"].values)
    assert {10, 30, 40} <= set(np.unique(labels).tolist())
    assert 0.3 < (labels != 0).mean() < 0.7


def test_example_plugin_own_tests_pass(installed: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not cube",
         str(EXAMPLE / "tests")],
        env=installed, capture_output=True, text=True, timeout=300, cwd=EXAMPLE,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout, result.stdout[-1000:]


def test_scaffolded_plugin_files_and_tests(installed: dict[str, str], tmp_path: Path) -> None:
    root = scaffold_region("river-mouth", tmp_path, bbox=(-16.55, 15.95, -16.40, 16.10))
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md",
        "pyproject.toml",
        "src/senland_geo_region_river_mouth/__init__.py",
        "tests/test_region.py",
    ]
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."senland_geo.regions"]' in pyproject
    assert 'river-mouth = "senland_geo_region_river_mouth:RIVER_MOUTH"' in pyproject
    init = (root / "src/senland_geo_region_river_mouth/__init__.py").read_text()
    assert "epsg=32628" in init and "catalog='earth-search'" in init
    namespace: dict = {}
    exec(compile(init, "init", "exec"), namespace)  # the generated code builds a Region
    assert namespace["RIVER_MOUTH"].bbox == (-16.55, 15.95, -16.40, 16.10)


def test_new_region_cli_and_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-region", "delta-west", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'senland-geo-region-delta-west'}" in result.output
    with pytest.raises(UserError, match="already exists"):
        scaffold_region("delta-west", tmp_path)
    with pytest.raises(UserError, match="lower-case letters"):
        scaffold_region("Delta West", tmp_path)
    with pytest.raises(UserError, match="west < east"):
        scaffold_region("bad-box", tmp_path, bbox=(-16.0, 15.0, -17.0, 16.0))
    assert utm_epsg(-16.5, 16.0) == 32628 and utm_epsg(12.6, 52.5) == 32633
    assert utm_epsg(151.2, -33.9) == 32756
