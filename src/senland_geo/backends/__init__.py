"""Backend plugins (group ``senland_geo.backends``) and automatic selection."""

from __future__ import annotations

import inspect
from typing import Any


def _accepted(cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``cls`` accepts (all of them when it takes ``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params}


def auto_name() -> str:
    """The backend the hardware calls for: ``cuda`` when torch sees a GPU, else ``cpu``."""
    from senland_geo import registry

    cuda = registry.load("backends", "cuda")
    return "cuda" if cuda.is_available()[0] else "cpu"


def get_backend(name: str | None = None, **options: Any) -> Any:
    """Instantiate a backend by name, or pick one from the hardware when ``name`` is None.

    Automatic choice: ``cuda`` when torch really sees a GPU, else ``cpu``. With an automatic
    choice, options the chosen backend does not take (``threads`` for cuda, ``tf32`` for
    cpu) are dropped; with an explicit name they are passed through, so a typo is an error.

    Raises:
        PluginNotFoundError: Unknown name (the message lists the installed backends).
        UserError: ``cuda`` asked for where there is no GPU.
    """
    from senland_geo import registry

    if name is None:
        name = auto_name()
        cls = registry.load("backends", name)
        return cls(**_accepted(cls, options))
    return registry.load("backends", name)(**options)
