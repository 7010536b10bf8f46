"""Backends: options, automatic choice, honest CUDA refusal, introspection."""

from __future__ import annotations

import json

import pytest
import torch

from senland_geo import hw
from senland_geo.backends import get_backend
from senland_geo.backends.cpu import CPUBackend
from senland_geo.backends.cuda import CUDABackend
from senland_geo.errors import PluginNotFoundError, UserError

NO_GPU = not CUDABackend.is_available()[0]


def test_cpu_backend_options_and_describe() -> None:
    before = torch.get_num_threads()
    try:
        backend = CPUBackend(threads=1, precision="bf16", channels_last=True)
        backend.setup()
        assert torch.get_num_threads() == 1
        info = backend.describe()
    finally:
        torch.set_num_threads(before)
    assert info["backend"] == "cpu" and info["threads"] == 1 and info["precision"] == "bf16"
    assert info["engine"].startswith("CPU ") and "GPU" not in info["engine"]
    assert info["channels_last"] is True and info["compile"] is False
    json.dumps(info)  # serialisable into checkpoints and bench rows


def test_cpu_backend_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="fp64"):
        CPUBackend(precision="fp64")
    with pytest.raises(ValueError, match="threads=0"):
        CPUBackend(threads=0)


def test_cpu_autocast_and_channels_last_are_applied() -> None:
    backend = CPUBackend(threads=1, precision="bf16", channels_last=True)
    model = backend.prepare_model(torch.nn.Conv2d(3, 4, 3, padding=1))
    x = backend.prepare_batch(torch.randn(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert model.weight.is_contiguous(memory_format=torch.channels_last)
    with backend.autocast():
        assert model(x).dtype == torch.bfloat16
    with CPUBackend(precision="fp32").autocast():
        assert model(x).dtype == torch.float32


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_refused_without_gpu_with_clear_message() -> None:
    ok, why = CUDABackend.is_available()
    assert not ok and why
    with pytest.raises(UserError) as err:
        get_backend("cuda")
    msg = str(err.value)
    assert "backend 'cuda' can't run here" in msg and why in msg and "--backend cpu" in msg


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_auto_picks_cpu_without_gpu_and_drops_cuda_only_options() -> None:
    backend = get_backend(None, threads=1, tf32=True, precision="bf16")
    assert backend.name == "cpu" and backend.threads == 1 and backend.precision == "bf16"
    assert hw.describe("cuda")["engine"].startswith("CPU")  # never labelled GPU without one
    assert hw.gpus() == []


def test_explicit_name_passes_options_through() -> None:
    with pytest.raises(TypeError, match="tf32"):
        get_backend("cpu", tf32=True)


def test_unknown_backend_lists_installed() -> None:
    with pytest.raises(PluginNotFoundError) as err:
        get_backend("tpu")
    assert "cpu" in str(err.value) and "cuda" in str(err.value)


def test_describe_records_cpu_memory_threads_libraries() -> None:
    info = hw.describe("cpu")
    assert info["physical_cores"] >= 1 and info["torch_threads"] == torch.get_num_threads()
    assert info["ram_gib"] > 0 and info["cpu_model"]
    libs = info["libraries"]
    assert libs["torch"] == torch.__version__
    if torch.backends.mkldnn.is_available():
        assert libs["onednn"]
    assert set(info["cpu_flags"]) >= {"avx2", "avx512f", "avx512_bf16"}
    assert info["cuda_available"] is (not NO_GPU)


def test_make_optimizer_is_fused_adamw_with_the_foreach_update() -> None:
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(3, 4, 3)
    twin = torch.nn.Conv2d(3, 4, 3)
    twin.load_state_dict(ref.state_dict())
    fused = CPUBackend(threads=1).make_optimizer(twin.parameters(), lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True and fused.defaults["weight_decay"] == 0.1
    x = torch.randn(2, 3, 8, 8)
    for _ in range(3):
        for model, opt in ((ref, plain), (twin, fused)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert not torch.equal(ref.weight, torch.nn.Conv2d(3, 4, 3).weight)
    torch.testing.assert_close(twin.weight, ref.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(twin.bias, ref.bias, rtol=1e-5, atol=1e-6)
    unfused = CPUBackend(threads=1, fused_optimizer=False).make_optimizer(ref.parameters())
    assert not unfused.defaults["fused"]
    assert CPUBackend(threads=1).describe()["fused_optimizer"] is True


def _conv_pair(transposed: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    kind = torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d
    kwargs = {"kernel_size": 2, "stride": 2} if transposed else {"kernel_size": 3, "padding": 1}
    stock, limited = kind(16, 8, **kwargs), kind(16, 8, **kwargs)
    limited.load_state_dict(stock.state_dict())
    return stock, limited


@pytest.mark.parametrize("transposed", [False, True])
def test_bf16_weight_grad_threads_same_results_on_one_thread(
    transposed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from senland_geo.backends import conv_wgrad

    stock, limited = _conv_pair(transposed)
    keys = list(limited.state_dict())
    assert conv_wgrad.limit_bf16_weight_grad_threads(limited, threads=1) == 1
    assert list(limited.state_dict()) == keys
    x = torch.randn(4, 16, 8, 8)
    before = torch.get_num_threads()
    calls: list[int] = []
    real_set = torch.set_num_threads

    def record(n: int) -> None:
        calls.append(n)
        real_set(n)

    torch.set_num_threads(2)
    try:
        outs = []
        for conv in (stock, limited):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = conv(x)
            if conv is limited:
                assert type(out.grad_fn).__name__ == "_ConvLimitedWgradBackward"
                monkeypatch.setattr(torch, "set_num_threads", record)
            out.float().square().sum().backward()
            outs.append(out)
    finally:
        monkeypatch.undo()
        torch.set_num_threads(before)
    assert calls == [1, 2]  # weight gradient on 1 thread, then the 2 threads restored
    assert outs[1].dtype == torch.bfloat16 and torch.equal(outs[0], outs[1])
    for a, b in ((stock.weight, limited.weight), (stock.bias, limited.bias)):
        assert b.grad.dtype == torch.float32 and b.grad.shape == a.shape
        torch.testing.assert_close(b.grad, a.grad, rtol=2e-2, atol=2e-2 * a.grad.abs().max().item())


def test_bf16_weight_grad_threads_inactive_in_fp32_and_inference() -> None:
    from senland_geo.backends import conv_wgrad

    _, limited = _conv_pair(False)
    conv_wgrad.limit_bf16_weight_grad_threads(limited)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(2, 16, 8, 8)
        assert type(limited(x).grad_fn).__name__ == "ConvolutionBackward0"
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert limited(x).dtype == torch.bfloat16
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads=0"):
        conv_wgrad.limit_bf16_weight_grad_threads(limited, threads=0)


def test_cpu_backend_limits_bf16_weight_grads_only_when_asked(monkeypatch) -> None:
    from senland_geo.backends.conv_wgrad import Bf16WgradConv2d, Bf16WgradConvTranspose2d

    monkeypatch.delenv("SENLAND_BF16_WGRAD_THREADS", raising=False)

    def kinds(backend: CPUBackend) -> set[str]:
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ConvTranspose2d(4, 4, 2))
        return {type(m).__name__ for m in backend.prepare_model(net)}

    assert kinds(CPUBackend(threads=2, precision="bf16", bf16_wgrad_threads=1)) == {
        Bf16WgradConv2d.__name__,
        Bf16WgradConvTranspose2d.__name__,
    }
    assert kinds(CPUBackend(threads=2, precision="bf16")) == {"Conv2d", "ConvTranspose2d"}
    monkeypatch.setenv("SENLAND_BF16_WGRAD_THREADS", "1")
    assert kinds(CPUBackend(threads=2, precision="bf16")) == {
        Bf16WgradConv2d.__name__,
        Bf16WgradConvTranspose2d.__name__,
    }
    monkeypatch.setenv("SENLAND_BF16_WGRAD_THREADS", "two")
    with pytest.raises(ValueError, match="SENLAND_BF16_WGRAD_THREADS='two'"):
        CPUBackend(threads=2, precision="bf16")
    monkeypatch.setenv("SENLAND_BF16_WGRAD_THREADS", "1")
    assert kinds(CPUBackend(threads=2, precision="bf16", bf16_wgrad_threads=None)) == {
        "Conv2d",
        "ConvTranspose2d",
    }
    assert kinds(CPUBackend(threads=1, precision="bf16")) == {"Conv2d", "ConvTranspose2d"}
    assert kinds(CPUBackend(threads=2, precision="fp32")) == {"Conv2d", "ConvTranspose2d"}
    assert CPUBackend(threads=2, precision="bf16").describe()["bf16_wgrad_threads"] == 1
    two_convs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
    assert CPUBackend(threads=2, precision="bf16").limit_bf16_weight_grads(two_convs) == 2
    assert (
        CPUBackend(threads=2, precision="bf16", compile=True).limit_bf16_weight_grads(
            torch.nn.Conv2d(3, 4, 3)
        )
        == 0
    )
    with pytest.raises(ValueError, match="bf16_wgrad_threads=0"):
        CPUBackend(bf16_wgrad_threads=0)


def test_bf16_without_native_support_warns_and_is_recorded(monkeypatch) -> None:
    from senland_geo.backends import cpu

    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"_slow_conv2d.*--precision fp32"):
        backend = CPUBackend(threads=1, precision="bf16")
    assert backend.describe()["bf16_native"] is False
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CPUBackend(threads=1, precision="bf16")
        CPUBackend(threads=1, precision="fp32")


def test_native_bf16_matches_the_convolution_torch_runs() -> None:
    from torch.profiler import profile

    from senland_geo.backends.cpu import native_bf16

    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    with profile() as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        conv(torch.randn(2, 4, 8, 8))
    ops = {e.key for e in prof.key_averages()}
    assert ("aten::mkldnn_convolution" in ops) == native_bf16()
    assert ("aten::_slow_conv2d_forward" in ops) == (not native_bf16())
