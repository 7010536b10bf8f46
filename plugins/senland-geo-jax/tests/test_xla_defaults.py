"""XLA:CPU flags chosen from CPU features, applied only when the user did not choose."""

from __future__ import annotations

import subprocess
import sys

from senland_geo_jax import xla_defaults

AVX2 = {"sse4_2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}


def test_ynnpack_off_only_without_avx512() -> None:
    assert xla_defaults.recommended_flags(AVX2) == [xla_defaults.NO_YNN_FLAG]
    assert xla_defaults.recommended_flags(AVX512) == []
    assert xla_defaults.recommended_flags(set()) == []  # unknown CPU: XLA's defaults


def test_apply_appends_and_respects_the_user() -> None:
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert xla_defaults.apply(env, AVX2) == [xla_defaults.NO_YNN_FLAG]
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false " + xla_defaults.NO_YNN_FLAG
    assert xla_defaults.apply(env, AVX2) == []  # already there: not added twice
    chosen = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}
    assert xla_defaults.apply(chosen, AVX2) == [] and chosen["XLA_FLAGS"].endswith("=dot")
    opted_out = {xla_defaults.OPT_OUT_ENV: "0"}
    assert xla_defaults.apply(opted_out, AVX2) == [] and "XLA_FLAGS" not in opted_out
    empty: dict[str, str] = {}
    assert xla_defaults.apply(empty, AVX512) == [] and "XLA_FLAGS" not in empty


def test_importing_the_plugin_sets_the_flags_before_jax() -> None:
    code = (
        "import os, senland_geo_jax as p; from senland_geo_jax import xla_defaults as x;"
        "print(p.XLA_FLAGS_ADDED == x.recommended_flags(x.cpu_flags()),"
        " all(f in os.environ.get('XLA_FLAGS', '') for f in p.XLA_FLAGS_ADDED))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["True", "True"]
