import subprocess
import sys
import zipfile

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory):
    """senland-geo built as a wheel and installed (non-editable) into a separate folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO), "-w", str(tmp)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp.glob("senland_geo-*.whl"))
    target = tmp / "site"
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    return wheel, target


def test_wheel_ships_catalog_and_checkpoint(installed_copy):
    wheel, _ = installed_copy
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "senland_geo/catalogs/brandenburg/catalog.json",
        "senland_geo/catalogs/brandenburg/bands/B02.tif",
        "senland_geo/catalogs/brandenburg/labels/osm-worldcover.tif",
        "senland_geo/catalogs/brandenburg/PROVENANCE.md",
        "senland_geo/catalogs/brandenburg/LICENSE-labels-ODbL.txt",
        "senland_geo/checkpoints/brandenburg-unet-resnet34-slim.pt",
    ):
        assert needed in names


def test_installed_package_finds_the_sample_catalog(installed_copy):
    _, target = installed_copy
    code = (
        "import senland_geo, senland_geo.stac as s;"
        "from senland_geo.regions import BRANDENBURG;"
        "items = s.search(BRANDENBURG);"
        "print(senland_geo.__file__); print(items[0].assets['B02'].href)"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=target
    )
    assert out.returncode == 0, out.stderr
    module_file, href = out.stdout.split()
    assert module_file.startswith(str(target))  # the installed copy, not the source tree
    assert href.startswith(str(target)) and href.endswith("bands/B02.tif")
