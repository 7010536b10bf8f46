"""Entry-point plugin registry: the only global state of senland-geo.

Three groups of plugins exist: models, backends and regions. Built-in plugins are
declared through the same ``importlib.metadata`` entry points as third-party ones, so
there is one code path. Listing plugins imports nothing; loading imports only the one
plugin asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from senland_geo.errors import PluginLoadError, PluginNotFoundError

GROUPS: dict[str, str] = {
    "models": "senland_geo.models",
    "backends": "senland_geo.backends",
    "regions": "senland_geo.regions",
}


@dataclass(frozen=True)
class PluginInfo:
    """What the registry knows about one plugin without importing it.

    Attributes:
        kind: Plugin kind, one of ``models``, ``backends``, ``regions``.
        name: Registry key, e.g. ``unet-resnet34``.
        value: The entry point's ``module:attribute`` target.
        distribution: Name of the distribution that declares it.
        version: Version of that distribution.
    """

    kind: str
    name: str
    value: str
    distribution: str
    version: str


def _group(kind: str) -> str:
    try:
        return GROUPS[kind]
    except KeyError:
        raise PluginNotFoundError(
            f"unknown plugin kind {kind!r}; choose one of {', '.join(GROUPS)}"
        ) from None


def _entry_points(kind: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=_group(kind)):
        found.setdefault(ep.name, ep)  # first distribution on sys.path wins
    return found


def list_plugins(kind: str) -> list[PluginInfo]:
    """List the plugins of one kind, sorted by name, importing none of them.

    Args:
        kind: ``models``, ``backends`` or ``regions``.

    Returns:
        One :class:`PluginInfo` per installed plugin.
    """
    infos = []
    for name, ep in sorted(_entry_points(kind).items()):
        dist = ep.dist
        infos.append(
            PluginInfo(
                kind=kind,
                name=name,
                value=ep.value,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
            )
        )
    return infos


def names(kind: str) -> list[str]:
    """Return the sorted names of the installed plugins of one kind."""
    return sorted(_entry_points(kind))


def _how_to_add(kind: str) -> str:
    return (
        f"to add one, install a distribution that declares an entry point in group "
        f"'{_group(kind)}' (see docs/plugins.md)"
    )


@cache
def load(kind: str, name: str) -> Any:
    """Import and return one plugin object.

    Args:
        kind: ``models``, ``backends`` or ``regions``.
        name: The plugin's registry name.

    Returns:
        The object the entry point refers to (a builder, a class, a Region, ...).

    Raises:
        PluginNotFoundError: No plugin of that name; the message lists installed names.
        PluginLoadError: The plugin exists but its module failed to import.
    """
    eps = _entry_points(kind)
    if name not in eps:
        installed = ", ".join(sorted(eps)) or "none"
        raise PluginNotFoundError(
            f"unknown {kind[:-1]} {name!r}; installed: {installed}; {_how_to_add(kind)}"
        )
    ep = eps[name]
    try:
        return ep.load()
    except Exception as exc:  # a broken plugin must not take the others down
        raise PluginLoadError(
            f"{kind[:-1]} plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc


def check_all(kind: str) -> list[tuple[PluginInfo, str | None]]:
    """Load every plugin of a kind and report which ones are broken.

    A broken plugin triggers a warning naming its module; the others still load.

    Args:
        kind: ``models``, ``backends`` or ``regions``.

    Returns:
        ``(info, error)`` pairs; ``error`` is None for a plugin that loaded.
    """
    report: list[tuple[PluginInfo, str | None]] = []
    for info in list_plugins(kind):
        try:
            load(kind, info.name)
        except PluginLoadError as exc:
            warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
            report.append((info, str(exc.__cause__ or exc)))
        else:
            report.append((info, None))
    return report


def clear_cache() -> None:
    """Forget loaded plugins (after installing a new distribution at run time)."""
    load.cache_clear()
