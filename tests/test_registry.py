import sys
import warnings
from importlib.metadata import EntryPoint

import pytest

from senland_geo import registry
from senland_geo.errors import PluginLoadError, PluginNotFoundError


class _FakeDist:
    name = "fake-dist"
    version = "9.9"


def _ep(name: str, value: str, group: str) -> EntryPoint:
    ep = EntryPoint(name, value, group)
    ep._for(_FakeDist())  # attach a distribution as importlib does
    return ep


@pytest.fixture
def fake_models(monkeypatch, tmp_path):
    """Hand-made entry points: one good plugin, one that fails to import."""
    (tmp_path / "good_plugin.py").write_text("def build(**kw):\n    return 'built'\n")
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        _ep("good", "good_plugin:build", "senland_geo.models"),
        _ep("broken", "broken_plugin:build", "senland_geo.models"),
    ]
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [e for e in eps if e.group == group]
    )
    registry.clear_cache()
    yield
    registry.clear_cache()
    for mod in ("good_plugin", "broken_plugin"):
        sys.modules.pop(mod, None)


def test_listing_imports_nothing(fake_models):
    infos = registry.list_plugins("models")
    assert [i.name for i in infos] == ["broken", "good"]
    assert infos[1].distribution == "fake-dist" and infos[1].version == "9.9"
    assert "good_plugin" not in sys.modules and "broken_plugin" not in sys.modules


def test_load_imports_only_the_chosen_plugin(fake_models):
    assert registry.load("models", "good")() == "built"
    assert "good_plugin" in sys.modules
    assert "broken_plugin" not in sys.modules


def test_broken_plugin_reported_without_breaking_others(fake_models):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = dict((info.name, err) for info, err in registry.check_all("models"))
    assert report["good"] is None
    assert "needs libfoo" in report["broken"]
    assert any("broken_plugin" in str(w.message) for w in caught)
    with pytest.raises(PluginLoadError, match="broken_plugin:build"):
        registry.load("models", "broken")


def test_unknown_name_lists_installed_and_how_to_add(fake_models):
    with pytest.raises(PluginNotFoundError) as info:
        registry.load("models", "nope")
    message = str(info.value)
    assert "'nope'" in message and "broken, good" in message
    assert "senland_geo.models" in message


def test_builtin_plugins_are_entry_points():
    assert {"unet-resnet34", "unet-resnet34-slim"} <= set(registry.names("models"))
    assert {"cpu", "cuda"} <= set(registry.names("backends"))
    assert {"brandenburg", "casamance", "dakar", "lac-de-guiers", "sine-saloum"} <= set(
        registry.names("regions")
    )
    with pytest.raises(PluginNotFoundError, match="unknown plugin kind"):
        registry.names("widgets")


def test_import_is_light():
    import subprocess

    code = (
        "import sys, senland_geo, senland_geo.registry, senland_geo.regions;"
        "heavy = [m for m in ('jax', 'torch', 'dask.distributed', 'optuna') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
