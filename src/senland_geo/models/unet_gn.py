"""U-Net with GroupNorm ("unet-gn"), a plain PyTorch model easy to mirror in other frameworks.

The architecture is deliberately simple so that the JAX backend (``senland-geo-jax``)
can replicate it layer for layer and load its weights:

* encoder: ``depth + 1`` double-conv blocks with channels ``base * 2**i``
  (32, 64, 128, 256, 512 by default), each block
  ``[Conv3x3(bias=False) -> GroupNorm -> ReLU] x 2``; a 2x2 max-pool between blocks;
* decoder: ``depth`` stages, each ``ConvTranspose2d(k=2, s=2)`` halving the channels,
  concatenation ``[upsampled, skip]`` on the channel axis, then a double-conv block;
* head: a 1x1 convolution (with bias) to ``num_classes`` logits.

With the defaults (``in_channels=10``, ``num_classes=11``, ``base_channels=32``,
``depth=4``, ``groups=8``) the model has 7,765,387 parameters.

Input height and width must be divisible by ``2**depth``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

GN_EPS = 1e-5


class DoubleConv(nn.Module):
    """Two ``Conv3x3(bias=False) -> GroupNorm -> ReLU`` layers.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of both convolutions.
        groups: Number of GroupNorm groups; must divide ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, out_channels, eps=GN_EPS)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=GN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the two conv-norm-ReLU layers.

        Args:
            x: ``(B, C_in, H, W)`` features.

        Returns:
            ``(B, C_out, H, W)`` features.
        """
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


class UpBlock(nn.Module):
    """Decoder stage: transposed-conv upsampling, skip concatenation, double conv.

    Args:
        in_channels: Channels of the coarser input; the skip has ``in_channels // 2``.
        out_channels: Output channels.
        groups: Number of GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels // 2 + out_channels, out_channels, groups)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` by 2, concatenate ``skip`` and convolve.

        Args:
            x: ``(B, C_in, H, W)`` coarse features.
            skip: ``(B, C_out, 2H, 2W)`` encoder features.

        Returns:
            ``(B, C_out, 2H, 2W)`` features.
        """
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNetGN(nn.Module):
    """U-Net with GroupNorm, returning per-pixel class logits.

    Args:
        in_channels: Input bands.
        num_classes: Output classes.
        base_channels: Channels of the first encoder block; doubled at each level.
        depth: Number of downsamplings.
        groups: GroupNorm groups in every block.

    Raises:
        ValueError: A size is not positive, or ``groups`` does not divide a block's
            channels.
    """

    temporal = False

    def __init__(
        self,
        in_channels: int = 10,
        num_classes: int = 11,
        base_channels: int = 32,
        depth: int = 4,
        groups: int = 8,
    ) -> None:
        super().__init__()
        for label, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
            ("depth", depth),
            ("groups", groups),
        ):
            if value < 1:
                raise ValueError(f"unet-gn: {label}={value} must be >= 1")
        if base_channels % groups:
            raise ValueError(
                f"unet-gn: groups={groups} must divide base_channels={base_channels}; "
                "choose e.g. groups=8 with base_channels=32"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.base_channels = base_channels
        self.depth = depth
        self.groups = groups
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        prev = in_channels
        for c in chans:
            self.down.append(DoubleConv(prev, c, groups))
            prev = c
        self.up = nn.ModuleList(
            UpBlock(chans[i + 1], chans[i], groups) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Args:
            x: ``(B, in_channels, H, W)`` input; ``H`` and ``W`` divisible by ``2**depth``.

        Returns:
            ``(B, num_classes, H, W)`` logits.

        Raises:
            ValueError: The input has the wrong rank, channels or spatial size.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"unet-gn expects (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}"
            )
        factor = 2**self.depth
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"unet-gn with depth={self.depth} needs H and W divisible by {factor}, "
                f"got {tuple(x.shape[-2:])}; pad or crop the patches"
            )
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x)


def build_unet_gn(in_channels: int = 10, num_classes: int = 11, **options: Any) -> nn.Module:
    """Build the GroupNorm U-Net (registered as model ``unet-gn``).

    Args:
        in_channels: Input bands.
        num_classes: Output classes.
        **options: ``base_channels`` (default 32), ``depth`` (4), ``groups`` (8).

    Returns:
        A :class:`UNetGN` taking ``(B, C, H, W)`` and returning ``(B, K, H, W)`` logits.

    Raises:
        ValueError: An unknown option or an invalid value.
    """
    allowed = {"base_channels", "depth", "groups"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unet-gn: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}"
        )
    return UNetGN(in_channels=in_channels, num_classes=num_classes, **options)
