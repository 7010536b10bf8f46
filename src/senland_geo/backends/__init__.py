"""Backend plugins (group ``senland_geo.backends``) and automatic selection."""

from __future__ import annotations

from typing import Any


def get_backend(name: str | None = None, **options: Any) -> Any:
    """Instantiate a backend by name, or pick one from the hardware when ``name`` is None.

    Automatic choice: ``cuda`` when a GPU is visible, else ``cpu``.
    """
    from senland_geo import registry

    if name is None:
        cuda = registry.load("backends", "cuda")
        name = "cuda" if cuda.is_available()[0] else "cpu"
    return registry.load("backends", name)(**options)
