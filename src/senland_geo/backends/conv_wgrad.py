"""bf16 convolution weight gradients on fewer threads (a oneDNN work-around for CPU training).

On the development machine (AMD Zen 5, AVX512-BF16, oneDNN 3.12 in torch 2.14) oneDNN's
bf16 weight-gradient kernel (``jit_bf16:avx512_core_bf16,backward_weights``) is much slower
on 2 threads than on 1: a 3x3, 256->256 convolution over a 16x8x8 batch takes ~190 ms on
2 threads and 9 ms on 1 (docs/performance.md, "bf16 weight gradients"). The other bf16
kernels (forward, data gradient) and the fp32 kernels scale normally.

:func:`limit_bf16_weight_grad_threads` swaps every ``nn.Conv2d`` and ``nn.ConvTranspose2d``
of a model for :class:`Bf16WgradConv2d` and :class:`Bf16WgradConvTranspose2d`. They behave
identically (same parameters, ``state_dict`` and forward result) except that under CPU
bf16 autocast in training the weight gradient is computed by oneDNN on ``wgrad_threads``
threads (default 1) while the data gradient keeps all threads. The stalls hit both kinds
(the transposed convolutions' weight gradients run the same oneDNN kernel).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _ConvLimitedWgrad(torch.autograd.Function):
    """``aten.convolution`` whose backward computes the weight gradient on fewer threads."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        conf: tuple[Any, ...],
        wgrad_threads: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = conf
        ctx.wgrad_threads = wgrad_threads
        return torch.ops.aten.convolution(x, weight, bias, *conf)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_out = grad_out.contiguous(memory_format=_format_of(x))
        grad_x = grad_b = grad_w = None
        if need_x:
            grad_x, _, _ = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, *ctx.conf, [True, False, False]
            )
        if need_b:
            # Not through oneDNN: it computes bias gradients in the (stalling) weight kernel.
            grad_b = grad_out.sum(dim=(0, 2, 3), dtype=torch.float32).to(grad_out.dtype)
        if need_w:
            threads = torch.get_num_threads()
            torch.set_num_threads(min(ctx.wgrad_threads, threads))
            try:
                _, grad_w, _ = torch.ops.aten.convolution_backward(
                    grad_out, x, weight, None, *ctx.conf, [False, True, False]
                )
            finally:
                torch.set_num_threads(threads)
        return grad_x, grad_w, grad_b, None, None


def _format_of(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        if not x.is_contiguous():
            return torch.channels_last
    return torch.contiguous_format


def _applies(module: nn.Module, x: torch.Tensor, wgrad_threads: int) -> bool:
    """Whether this call is a CPU bf16-autocast training call with more threads."""
    return (
        x.device.type == "cpu"
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and torch.is_grad_enabled()
        and torch.get_num_threads() > wgrad_threads
    )


def _bf16_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conf: tuple[Any, ...],
    wgrad_threads: int,
) -> torch.Tensor:
    """Autocast's bf16 convolution (same casts), with the limited weight-gradient backward."""
    bf16 = torch.bfloat16
    b = None if bias is None else bias.to(bf16)
    with torch.autocast("cpu", enabled=False):
        return _ConvLimitedWgrad.apply(x.to(bf16), weight.to(bf16), b, conf, wgrad_threads)


class Bf16WgradConv2d(nn.Conv2d):
    """``nn.Conv2d`` computing its bf16 weight gradient on ``wgrad_threads`` threads.

    Only the CPU bf16-autocast training path differs from ``nn.Conv2d`` (and only in how
    many threads compute the weight gradient); fp32, inference and other devices run the
    parent's code.
    """

    wgrad_threads: int = 1

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if not _applies(self, input, self.wgrad_threads):
            return super()._conv_forward(input, weight, bias)
        conf = (self.stride, self.padding, self.dilation, False, (0, 0), self.groups)
        return _bf16_conv(input, weight, bias, conf, self.wgrad_threads)


class Bf16WgradConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` computing its bf16 weight gradient on ``wgrad_threads`` threads.

    See :class:`Bf16WgradConv2d`.
    """

    wgrad_threads: int = 1

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """Transposed convolution, as ``nn.ConvTranspose2d.forward``."""
        if not _applies(self, input, self.wgrad_threads):
            return super().forward(input, output_size)
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        conf = (self.stride, self.padding, self.dilation, True, output_padding, self.groups)
        return _bf16_conv(input, self.weight, self.bias, conf, self.wgrad_threads)


def limit_bf16_weight_grad_threads(model: nn.Module, threads: int = 1) -> int:
    """Swap ``model``'s plain ``nn.Conv2d``/``nn.ConvTranspose2d`` for the classes above.

    Parameters, buffers, ``state_dict`` keys and forward results are unchanged.

    Args:
        model: The model to modify.
        threads: Threads for the bf16 weight-gradient kernels (>= 1).

    Returns:
        The number of convolutions changed.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads < 1:
        raise ValueError(f"bf16 weight-gradient threads={threads}: must be >= 1")
    count = 0
    for module in model.modules():
        new_class = _SWAPS.get(type(module))
        if new_class is not None:
            module.__class__ = new_class
            module.wgrad_threads = threads
            count += 1
    return count


_SWAPS: dict[type, type] = {
    nn.Conv2d: Bf16WgradConv2d,
    Bf16WgradConv2d: Bf16WgradConv2d,
    nn.ConvTranspose2d: Bf16WgradConvTranspose2d,
    Bf16WgradConvTranspose2d: Bf16WgradConvTranspose2d,
}
