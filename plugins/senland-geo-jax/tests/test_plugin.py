"""The backend is discoverable through entry points and describes its engine."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

from senland_geo_jax.backend import JaxBackend


def test_entry_point_is_registered():
    eps = {ep.name: ep for ep in entry_points(group="senland_geo.backends")}
    assert "jax" in eps, "run: pip install -e plugins/senland-geo-jax"
    assert eps["jax"].value == "senland_geo_jax.backend:JaxBackend"
    assert eps["jax"].dist.name == "senland-geo-jax"
    assert eps["jax"].load() is JaxBackend


def test_senland_geo_registry_loads_it():
    from senland_geo import registry

    assert "jax" in registry.names("backends")
    assert registry.load("backends", "jax") is JaxBackend


def test_available_and_describe():
    ok, reason = JaxBackend.is_available()
    assert ok, reason
    info = JaxBackend.describe()
    assert info["backend"] == JaxBackend.name == "jax"
    assert info["jax_version"] and info["devices"] and info["cpu_model"]
    json.dumps(info)


def test_importing_the_plugin_does_not_import_jax():
    code = (
        "import sys, senland_geo_jax, senland_geo_jax.backend;"
        "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
