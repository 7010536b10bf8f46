"""Class tables: codes, names and official colours of the label products.

A class table maps the codes stored in label rasters and maps (e.g. WorldCover's
10, 20, ... 100) to contiguous model indices 0..K-1. Code 0 always means "no label":
it is ignored by losses and metrics and written as nodata in maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NODATA_CODE = 0
IGNORE_INDEX = -100


@dataclass(frozen=True)
class LandClass:
    """One class of a label product.

    Attributes:
        code: Value stored in label rasters and output maps (1..255).
        name: Human-readable name.
        color: ``#rrggbb`` colour used in map colormaps and plots.
    """

    code: int
    name: str
    color: str

    def __post_init__(self) -> None:
        if not 1 <= self.code <= 255:
            raise ValueError(f"class code {self.code} of {self.name!r} must be in 1..255")
        if len(self.color) != 7 or not self.color.startswith("#"):
            raise ValueError(f"class colour {self.color!r} of {self.name!r} must be '#rrggbb'")

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) tuple of 0..255 integers."""
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class ClassTable:
    """An ordered set of classes; position in ``classes`` is the model's output index.

    Attributes:
        name: Identifier of the table, e.g. ``esa-worldcover``.
        classes: The classes, in model-index order.
    """

    name: str
    classes: tuple[LandClass, ...]

    def __post_init__(self) -> None:
        codes = [c.code for c in self.classes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"class table {self.name!r} repeats a code: {codes}")
        if not codes:
            raise ValueError(f"class table {self.name!r} is empty")

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def codes(self) -> list[int]:
        """Class codes in model-index order."""
        return [c.code for c in self.classes]

    @property
    def names(self) -> list[str]:
        """Class names in model-index order."""
        return [c.name for c in self.classes]

    def code_to_index_lut(self) -> np.ndarray:
        """Return a 256-entry lookup table from raster code to model index.

        Codes outside the table (including 0) map to :data:`IGNORE_INDEX`.
        """
        lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
        for i, c in enumerate(self.classes):
            lut[c.code] = i
        return lut

    def index_to_code_lut(self) -> np.ndarray:
        """Return an array mapping model index to raster code (uint8)."""
        return np.array(self.codes, dtype=np.uint8)

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """Return a rasterio colormap: code -> RGBA, with 0 transparent black."""
        cmap = {NODATA_CODE: (0, 0, 0, 0)}
        for c in self.classes:
            cmap[c.code] = (*c.rgb, 255)
        return cmap

    def to_dict(self) -> dict:
        """Serialise to plain data (stored in checkpoints and map metadata)."""
        return {
            "name": self.name,
            "classes": [{"code": c.code, "name": c.name, "color": c.color} for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassTable:
        """Inverse of :meth:`to_dict`."""
        return cls(data["name"], tuple(LandClass(**c) for c in data["classes"]))


#: ESA WorldCover 2020/2021 legend with the official colours (product user manual).
WORLDCOVER = ClassTable(
    "esa-worldcover",
    (
        LandClass(10, "Tree cover", "#006400"),
        LandClass(20, "Shrubland", "#ffbb22"),
        LandClass(30, "Grassland", "#ffff4c"),
        LandClass(40, "Cropland", "#f096ff"),
        LandClass(50, "Built-up", "#fa0000"),
        LandClass(60, "Bare / sparse vegetation", "#b4b4b4"),
        LandClass(70, "Snow and ice", "#f0f0f0"),
        LandClass(80, "Permanent water bodies", "#0064c8"),
        LandClass(90, "Herbaceous wetland", "#0096a0"),
        LandClass(95, "Mangroves", "#00cf75"),
        LandClass(100, "Moss and lichen", "#fae6a0"),
    ),
)

#: PASTIS semantic labels: 18 crop/land classes + background (0 = background is kept as
#: class "Background" with code 20 in maps, since code 0 is nodata; 19 "void" is ignored).
PASTIS = ClassTable(
    "pastis",
    tuple(
        LandClass(code, name, color)
        for code, name, color in [
            (1, "Meadow", "#a6cee3"),
            (2, "Soft winter wheat", "#1f78b4"),
            (3, "Corn", "#b2df8a"),
            (4, "Winter barley", "#33a02c"),
            (5, "Winter rapeseed", "#fb9a99"),
            (6, "Spring barley", "#e31a1c"),
            (7, "Sunflower", "#fdbf6f"),
            (8, "Grapevine", "#ff7f00"),
            (9, "Beet", "#cab2d6"),
            (10, "Winter triticale", "#6a3d9a"),
            (11, "Winter durum wheat", "#ffff99"),
            (12, "Fruits, vegetables, flowers", "#b15928"),
            (13, "Potatoes", "#8dd3c7"),
            (14, "Leguminous fodder", "#bebada"),
            (15, "Soybeans", "#fb8072"),
            (16, "Orchard", "#80b1d3"),
            (17, "Mixed cereal", "#fdb462"),
            (18, "Sorghum", "#b3de69"),
            (20, "Background", "#000000"),
        ]
    ),
)

#: MTLCC (Munich) labels: 17 crops + background (code 18 in maps; 0 stays nodata).
MTLCC = ClassTable(
    "mtlcc",
    tuple(
        LandClass(code, name, color)
        for code, name, color in [
            (1, "Sugar beet", "#cab2d6"),
            (2, "Oat", "#fdbf6f"),
            (3, "Meadow", "#a6cee3"),
            (4, "Rape", "#fb9a99"),
            (5, "Hop", "#33a02c"),
            (6, "Spelt", "#ffff99"),
            (7, "Triticale", "#6a3d9a"),
            (8, "Beans", "#8dd3c7"),
            (9, "Peas", "#bebada"),
            (10, "Potato", "#b15928"),
            (11, "Soybeans", "#fb8072"),
            (12, "Asparagus", "#80b1d3"),
            (13, "Wheat", "#1f78b4"),
            (14, "Winter barley", "#b2df8a"),
            (15, "Rye", "#e31a1c"),
            (16, "Summer barley", "#ff7f00"),
            (17, "Maize", "#b3de69"),
            (18, "Background", "#000000"),
        ]
    ),
)

TABLES: dict[str, ClassTable] = {t.name: t for t in (WORLDCOVER, PASTIS, MTLCC)}
