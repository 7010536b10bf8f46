"""The Backend protocol: one interface for cpu, cuda (torch) and jax (separate plugin)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """An engine that runs senland-geo models.

    Torch backends also provide ``device`` (a ``torch.device``) and ``autocast()``.
    """

    name: str

    def is_available(self) -> tuple[bool, str]:
        """Return whether this backend can run here, and why not if it can't."""
        ...

    def describe(self) -> dict[str, Any]:
        """Return the hardware and software this backend runs on."""
        ...
