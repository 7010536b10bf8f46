"""The benchmark: exact FLOP counts, peak measurement, and a --quick run's JSON and plots."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from senland_geo import bench, roofline


def test_flop_count_of_a_known_conv_is_exact() -> None:
    conv = torch.nn.Conv2d(10, 32, 3, padding=1, bias=False)
    x = torch.randn(2, 10, 64, 64)
    # forward: 2 * B * Cout * H * W * Cin * k * k
    fwd = 2 * 2 * 32 * 64 * 64 * 10 * 3 * 3
    assert roofline.forward_flops(conv, x) == fwd
    x.requires_grad_(True)
    # backward: grad wrt input and wrt weight, each as many FLOPs as the forward
    flops = roofline.train_step_flops(conv, x, None, lambda out, _y: out.sum())
    assert flops == 3 * fwd
    assert conv.weight.grad is None  # gradients of the counting pass are cleared


def test_matmul_peak_and_fraction() -> None:
    res = roofline.matmul_peak("fp32", sizes=(128, 256), repeats=2)
    assert set(res["by_size"]) == {"128", "256"}
    assert res["gflops"] == max(v["best"] for v in res["by_size"].values()) > 0
    achieved, frac = roofline.fraction_of_peak(10.0, 2e9, 40.0)
    assert achieved == pytest.approx(20.0) and frac == pytest.approx(0.5)
    with pytest.raises(ValueError, match="fp8"):
        roofline.matmul_peak("fp8")


def test_conv_peak_counts_a_3x3_conv() -> None:
    res = roofline.conv_peak("fp32", batch=2, channels=32, side=16, repeats=2)
    assert res["shape"] == [2, 32, 16, 16]
    assert res["gflops"] >= res["median_gflops"] > 0
    with pytest.raises(ValueError, match="fp16"):
        roofline.conv_peak("fp16")


def test_plain_baseline_row_and_vs_plain_ratio() -> None:
    cfg = bench.BenchConfig.quick(size=32, steps=1, warmup=0)
    (plain,) = bench.measure_plain_smp("eager", 2, cfg, threads=1)  # BN needs 2
    assert plain["framework"] == "torch-plain" and plain["optimizer"] == "adamw-foreach"
    assert plain["params"] == 24_459_771  # smp Unet("resnet34"), 10 bands, 11 classes
    assert _positive(plain["images_per_s"]) and _positive(plain["cpu_s_median"])
    # 32x32 patch: FLOPs per image are a quarter of the 64x64 figure (3.04 GFLOP)
    assert plain["gflop_per_image"] == pytest.approx(3.036 / 4, rel=0.02)
    ours = [
        {
            "model": "unet-resnet34",
            "task": "train",
            "batch_size": 2,
            "precision": "fp32",
            "images_per_s": 3 * plain["images_per_s"],
        },
        {
            "model": "unet-resnet34",
            "task": "infer",
            "batch_size": 2,
            "precision": "fp32",
            "images_per_s": 1.0,
        },
        {
            "model": "unet-resnet34",
            "task": "train",
            "batch_size": 2,
            "precision": "bf16",
            "images_per_s": 1.0,
        },
    ]
    bench._add_vs_plain(ours, [plain])
    assert ours[0]["vs_plain"] == pytest.approx(3.0, rel=1e-2)
    assert "vs_plain" not in ours[1] and "vs_plain" not in ours[2]


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown bench mode"):
        bench.BenchConfig(modes=("turbo",))


def _positive(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v) and v > 0


def test_quick_run_json_schema_and_plots(tmp_path, monkeypatch) -> None:
    # A tiny unet-gn (8 base channels, 2 levels), 32x32 patches, 1 thread, via the CLI path.
    cfg = bench.BenchConfig.quick(
        models=("unet-gn",),
        model_options={"unet-gn": {"base_channels": 8, "depth": 2}},
        size=32,
        threads=1,
        scaling_threads=(1,),
        jax=False,
    )
    snapshots: list[dict] = []
    before = torch.get_num_threads()
    result = bench.run(cfg, partial=snapshots.append)
    assert torch.get_num_threads() == before or torch.get_num_threads() == 1
    assert snapshots and snapshots[-1]["complete"] is False and result["complete"] is True
    paths = bench.write_outputs(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == bench.SCHEMA_VERSION
    assert data["hardware"]["engine"].startswith("CPU")
    assert len(data["loadavg_start"]) == 3
    peaks = data["peaks"]["1"]
    assert _positive(peaks["fp32"]["gflops"]) and _positive(peaks["bf16"]["gflops"])
    assert {(r["task"], r["mode"]) for r in data["rows"]} == {
        ("train", "eager"),
        ("infer", "eager"),
        ("train", "bf16"),
        ("infer", "bf16"),
    }
    for row in data["rows"] + data["scaling"]:
        for key in ("images_per_s", "gflop_per_image", "achieved_gflops", "fraction_of_fp32_peak"):
            assert _positive(row[key]), (key, row)
        assert row["threads"] == 1 and row["framework"] == "torch"
    train = next(r for r in data["rows"] if r["task"] == "train" and r["mode"] == "eager")
    infer = next(r for r in data["rows"] if r["task"] == "infer" and r["mode"] == "eager")
    assert train["gflop_per_image"] > 2 * infer["gflop_per_image"]  # fwd + bwd > 2x fwd
    assert data["scaling"][0]["speedup_vs_1"] == 1.0
    for kind in ("bars", "scaling"):
        assert paths[kind].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| torch | unet-gn | train | eager |" in paths["table"].read_text()


def test_cli_bench_quick_refuses_bad_mode() -> None:
    from senland_geo.cli import cli

    res = CliRunner().invoke(cli, ["bench", "--quick", "--modes", "turbo"])
    assert res.exit_code != 0 and "unknown bench mode" in str(res.exception or res.output)


def test_jax_skipped_with_a_note_when_plugin_missing(monkeypatch) -> None:
    monkeypatch.setattr(bench, "jax_available", lambda: (False, "not installed: pip install x"))
    rows, note = bench.run_jax(bench.BenchConfig.quick(), (2,))
    assert rows == [] and "pip install" in note


def test_bf16_modes_choose_weight_grad_threading(monkeypatch) -> None:
    monkeypatch.delenv("SENLAND_BF16_WGRAD_THREADS", raising=False)
    cfg = bench.BenchConfig.quick(
        models=("unet-gn",), model_options={"unet-gn": {"base_channels": 8, "depth": 1}}, size=16
    )
    before = torch.get_num_threads()
    try:
        rows = {
            mode: bench.measure_torch("unet-gn", mode, 2, cfg, threads=2, steps=1, inference=False)
            for mode in ("bf16", "bf16-wgrad1", "bf16-stock", "eager")
        }
    finally:
        torch.set_num_threads(before)
    assert rows["bf16"][0]["bf16_wgrad_threads"] is None  # default: torch's threading
    assert rows["bf16-wgrad1"][0]["bf16_wgrad_threads"] == 1
    assert rows["bf16-stock"][0]["bf16_wgrad_threads"] is None
    assert rows["eager"][0]["bf16_wgrad_threads"] is None
    assert all(_positive(r[0]["images_per_s"]) for r in rows.values())


def test_bf16_modes_skipped_with_a_note_without_native_bf16(monkeypatch) -> None:
    from senland_geo.backends import cpu

    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    cfg = bench.BenchConfig(
        modes=("eager", "bf16", "bf16-stock"), scaling_modes=("bf16",), agrunet_modes=("eager",)
    )
    notes: list[str] = []
    modes, scaling, agrunet = bench._runnable_modes(cfg, notes)
    assert modes == ("eager",) and scaling == () and agrunet == ("eager",)
    assert len(notes) == 1 and "['bf16', 'bf16-stock'] skipped" in notes[0]
    assert "--precision fp32" in notes[0]
    forced = bench.BenchConfig(modes=("eager", "bf16"), bf16_without_native=True)
    assert bench._runnable_modes(forced, [])[0] == ("eager", "bf16")
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    assert bench._runnable_modes(cfg, notes)[0] == ("eager", "bf16", "bf16-stock")
    assert len(notes) == 1


def test_no_fraction_of_a_non_native_bf16_peak() -> None:
    peaks = {"default": {"fp32": {"gflops": 20.0}, "bf16": {"gflops": 0.5, "native": False}}}
    rows = [
        {"precision": "bf16", "achieved_gflops": 10.0},
        {"precision": "fp32", "achieved_gflops": 10.0},
    ]
    bench._add_fractions(rows, peaks)
    assert rows[0]["fraction_of_own_peak"] is None and rows[0]["fraction_of_fp32_peak"] == 0.5
    assert rows[1]["fraction_of_own_peak"] == 0.5
