"""Two example regions for senland-geo, registered through the ``senland_geo.regions`` group.

- ``brandenburg-mini``: a 5.12 x 5.12 km square in the middle of the embedded Brandenburg
  sample. It uses the catalog shipped inside senland-geo, so ``senland-geo cube --region
  brandenburg-mini`` works offline in a few seconds.
- ``saint-louis``: Saint-Louis and the Senegal river mouth (about 16 x 17 km), Sentinel-2
  L2A from Earth Search with ESA WorldCover 2021 labels (needs the internet).

Copy this distribution, rename it, and edit the :class:`~senland_geo.regions.Region`
objects below: that is all a region plugin is.
"""

from __future__ import annotations

from senland_geo.regions import Region

__version__ = "0.1.0"

BRANDENBURG_MINI = Region(
    name="brandenburg-mini",
    # west, south, east, north in degrees (EPSG:4326): what the STAC search uses.
    bbox=(12.5710, 52.4546, 12.6486, 52.5019),
    epsg=32633,  # UTM zone 33N, the grid of the embedded sample
    resolution=10.0,
    time_range=("2017-02-01", "2017-02-28"),
    collections=("sentinel-2-l1c",),
    catalog="brandenburg-sample",  # the static STAC catalog shipped inside senland-geo
    labels="embedded",  # the OSM-derived label raster that catalog carries
    description="Example plugin: 5.1 x 5.1 km of the embedded Brandenburg sample (offline)",
    # Optional: pin the exact output grid (minx, miny, maxx, maxy) in EPSG:32633, here
    # 512 x 512 pixels aligned with the sample's own 10 m grid.
    grid_bounds=(335120.0, 5814360.0, 340240.0, 5819480.0),
)

SAINT_LOUIS = Region(
    name="saint-louis",
    bbox=(-16.55, 15.95, -16.40, 16.10),
    epsg=32628,  # UTM zone 28N
    time_range=("2021-01-01", "2021-12-31"),
    collections=("sentinel-2-l2a",),
    catalog="earth-search",
    labels="esa-worldcover-2021",
    description="Example plugin: Saint-Louis and the Senegal river mouth (16 x 17 km)",
)
