"""Baseline models the AgrUNet seed compares against, plus a EuroSAT warm-up classifier.

* :class:`UNet3D` — the 3D U-Net of Rustowicz et al. (2019) in the form used by the
  U-TAE benchmark (``VSainteuf/utae-paps``, ``src/backbones/unet3d.py``); with the default
  ``feats=8`` it has 1,553,796 parameters for 10 bands and 20 classes (seed: 1.55 M).
* :class:`UTAE` — U-TAE (Garnot & Landrieu, ICCV 2021). TorchGeo 0.8.1 ships an ``LTAE``
  (sequence-to-vector, no date mask) and a ``ConvLSTM`` but no U-TAE, so it is implemented
  here compactly after the published code, reusing the per-pixel, masked
  :class:`~senland_geo.models.agrunet.LTAE2d`. Default PASTIS configuration: 1,087,220
  parameters (seed: 1.09 M). Two deliberate differences from the original: the logits are
  a plain conv (the original puts a batch norm and a ReLU on them), and the L-TAE
  normalises each date separately so that padded dates cannot shift the statistics.
* :class:`ResNet18Classifier` — torchvision ResNet-18, random init, ``in_channels`` bands,
  ``(B, C, H, W) -> (B, K)`` logits, for the EuroSAT warm-up.

Temporal models take ``(B, T, C, H, W)`` with an optional boolean ``(B, T)`` date mask
(True = real date) and optional ``(B, T)`` date positions, like
:class:`~senland_geo.models.agrunet.AgrUNet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from senland_geo.models.agrunet import LTAE2d, check_date_mask, masked_temporal_mean

__all__ = [
    "UNet3D",
    "UTAE",
    "ResNet18Classifier",
    "build_resnet18_classifier",
    "build_unet3d",
    "build_utae",
]


# --------------------------------------------------------------------------- UNet3D


def _conv3d_bn(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv3d(cin, cout, 3, padding=1),
        nn.BatchNorm3d(cout),
        nn.LeakyReLU(inplace=True),
    ]


def _up3d(cin: int, cout: int) -> nn.ConvTranspose3d:
    return nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1)


class UNet3D(nn.Module):
    """3D U-Net over ``(B, T, C, H, W)``; time is pooled with space, then averaged out.

    Two 2x2x2 max-poolings (time and space), transposed-conv upsampling, a final 3x3x3
    conv to class scores at every date and a mean over (valid) dates. Padded dates are
    zeroed at the input, as in the reference code; because the 3D kernels mix neighbouring
    dates, padding is *not* exactly invisible (unlike AgrUNet and U-TAE). Inputs are
    zero-padded internally to ``T`` and ``H, W`` multiples of 4 and cropped back.

    Args:
        in_channels: Spectral bands.
        num_classes: Output classes.
        feats: Width multiplier (levels have ``4, 8, 16`` times ``feats`` channels).

    Attributes:
        temporal: True.
    """

    temporal = True

    def __init__(self, in_channels: int = 10, num_classes: int = 20, feats: int = 8) -> None:
        super().__init__()
        self.en3 = nn.Sequential(
            *_conv3d_bn(in_channels, 4 * feats), *_conv3d_bn(4 * feats, 4 * feats)
        )
        self.en4 = nn.Sequential(
            *_conv3d_bn(4 * feats, 8 * feats), *_conv3d_bn(8 * feats, 8 * feats)
        )
        self.center = nn.Sequential(
            *_conv3d_bn(8 * feats, 16 * feats),
            *_conv3d_bn(16 * feats, 16 * feats),
            _up3d(16 * feats, 8 * feats),
        )
        self.dc4 = nn.Sequential(
            *_conv3d_bn(16 * feats, 8 * feats), *_conv3d_bn(8 * feats, 8 * feats)
        )
        self.trans3 = nn.Sequential(
            _up3d(8 * feats, 4 * feats), nn.BatchNorm3d(4 * feats), nn.LeakyReLU(inplace=True)
        )
        self.dc3 = nn.Sequential(
            *_conv3d_bn(8 * feats, 4 * feats), *_conv3d_bn(4 * feats, 2 * feats)
        )
        self.final = nn.Conv3d(2 * feats, num_classes, 3, padding=1)

    def forward(
        self, x: Tensor, date_mask: Tensor | None = None, positions: Tensor | None = None
    ) -> Tensor:
        """Segment a series.

        Args:
            x: ``(B, T, C, H, W)``.
            date_mask: Optional ``(B, T)`` boolean date mask (True = real date).
            positions: Unused.

        Returns:
            Logits ``(B, K, H, W)``.
        """
        mask = check_date_mask(x, date_mask)
        b, t, _, h, w = x.shape
        pad_t, pad_h, pad_w = (-t) % 4, (-h) % 4, (-w) % 4
        if mask is not None or pad_t:
            valid = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask
            mask = F.pad(valid, (0, pad_t), value=False)
        out = F.pad(x, (0, pad_w, 0, pad_h, 0, 0, 0, pad_t)).transpose(1, 2)  # (B, C, T, H, W)
        if mask is not None:
            out = out * mask[:, None, :, None, None].to(out.dtype)
        en3 = self.en3(out)
        en4 = self.en4(F.max_pool3d(en3, 2))
        center = self.center(F.max_pool3d(en4, 2))
        dc4 = self.dc4(torch.cat([center, en4], dim=1))
        dc3 = self.dc3(torch.cat([self.trans3(dc4), en3], dim=1))
        logits = masked_temporal_mean(self.final(dc3), mask)
        return logits[..., :h, :w]


# --------------------------------------------------------------------------- U-TAE


def _conv_layers(
    widths: Sequence[int],
    norm: str = "batch",
    k: int = 3,
    s: int = 1,
    p: int = 1,
    groups: int = 4,
) -> nn.Sequential:
    """Conv2d -> norm -> ReLU for each consecutive pair of ``widths`` (reflect padding)."""
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:], strict=True):
        layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p, padding_mode="reflect"))
        layers.append(nn.GroupNorm(groups, cout) if norm == "group" else nn.BatchNorm2d(cout))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _DownBlock(nn.Module):
    """Strided conv down, conv to the new width, residual conv (per date)."""

    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, norm: str) -> None:
        super().__init__()
        self.down = _conv_layers([cin, cin], norm, k, s, p)
        self.conv1 = _conv_layers([cin, cout], norm)
        self.conv2 = _conv_layers([cout, cout], norm)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.down(x))
        return out + self.conv2(out)


class _UpBlock(nn.Module):
    """Transposed conv up, 1x1 conv on the aggregated skip, concat, residual convs."""

    def __init__(self, cin: int, cout: int, cskip: int, k: int, s: int, p: int) -> None:
        super().__init__()
        self.skip_conv = nn.Sequential(nn.Conv2d(cskip, cskip, 1), nn.BatchNorm2d(cskip), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p), nn.BatchNorm2d(cout), nn.ReLU()
        )
        self.conv1 = _conv_layers([cout + cskip, cout])
        self.conv2 = _conv_layers([cout, cout])

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)
        if up.shape[-2:] != skip.shape[-2:]:  # odd sizes: follow the skip's grid
            up = F.interpolate(up, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        out = self.conv1(torch.cat([up, self.skip_conv(skip)], dim=1))
        return out + self.conv2(out)


def _attention_aggregate(x: Tensor, attn: Tensor) -> Tensor:
    """Collapse ``(B, T, C, H, W)`` with group attention ``(G, B, T, h, w)`` -> ``(B, C, H, W)``.

    Each group of ``C / G`` channels uses its head's weights, bilinearly resized to the
    feature map's grid (U-TAE's ``att_group`` aggregation).
    """
    g, b, t, h, w = attn.shape
    size = x.shape[-2:]
    a = attn.reshape(g * b, t, h, w)
    if (h, w) != tuple(size):
        a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    a = a.view(g, b, t, 1, *size)
    groups = torch.stack(x.chunk(g, dim=2))  # (G, B, T, C/G, H, W)
    out = (a * groups).sum(dim=2)  # (G, B, C/G, H, W)
    return torch.cat(list(out), dim=1)


class UTAE(nn.Module):
    """U-TAE: a shared 2D U-Net encoder, an L-TAE at the bottom, attention-collapsed skips.

    Args:
        in_channels: Spectral bands.
        num_classes: Output classes.
        encoder_widths: Encoder widths; ``len - 1`` downsamplings.
        decoder_widths: Decoder widths (same length; last must equal the L-TAE output).
        out_conv: Width of the hidden layer of the output head.
        str_conv_k: Kernel of the strided (down/up) convs.
        str_conv_s: Stride of the strided convs.
        str_conv_p: Padding of the strided convs.
        n_head: L-TAE heads.
        d_model: L-TAE width.
        d_k: L-TAE key size.
        encoder_norm: ``"group"`` (default, 4 groups) or ``"batch"`` in the encoder.

    Attributes:
        temporal: True.
    """

    temporal = True

    def __init__(
        self,
        in_channels: int = 10,
        num_classes: int = 20,
        encoder_widths: Sequence[int] = (64, 64, 64, 128),
        decoder_widths: Sequence[int] = (32, 32, 64, 128),
        out_conv: int = 32,
        str_conv_k: int = 4,
        str_conv_s: int = 2,
        str_conv_p: int = 1,
        n_head: int = 16,
        d_model: int = 256,
        d_k: int = 4,
        encoder_norm: str = "group",
    ) -> None:
        super().__init__()
        if len(encoder_widths) != len(decoder_widths):
            raise ValueError(
                f"encoder_widths {list(encoder_widths)} and decoder_widths "
                f"{list(decoder_widths)} must have the same length"
            )
        if decoder_widths[-1] != encoder_widths[-1]:
            raise ValueError(
                f"decoder_widths[-1]={decoder_widths[-1]} must equal "
                f"encoder_widths[-1]={encoder_widths[-1]}"
            )
        n = len(encoder_widths)
        kwargs = {"k": str_conv_k, "s": str_conv_s, "p": str_conv_p}
        self.in_conv = _conv_layers(
            [in_channels, encoder_widths[0], encoder_widths[0]], encoder_norm
        )
        self.down_blocks = nn.ModuleList(
            _DownBlock(encoder_widths[i], encoder_widths[i + 1], norm=encoder_norm, **kwargs)
            for i in range(n - 1)
        )
        self.up_blocks = nn.ModuleList(
            _UpBlock(decoder_widths[i], decoder_widths[i - 1], encoder_widths[i - 1], **kwargs)
            for i in range(n - 1, 0, -1)
        )
        self.temporal_encoder = LTAE2d(
            encoder_widths[-1], n_head=n_head, d_k=d_k, mlp=(d_model, encoder_widths[-1]),
            d_model=d_model,
        )  # fmt: skip
        self.out_conv = nn.Sequential(
            _conv_layers([decoder_widths[0], out_conv]),
            nn.Conv2d(out_conv, num_classes, 3, padding=1, padding_mode="reflect"),
        )

    def forward(
        self, x: Tensor, date_mask: Tensor | None = None, positions: Tensor | None = None
    ) -> Tensor:
        """Segment a series.

        Args:
            x: ``(B, T, C, H, W)``; H and W divisible by 8 with the default 3 downsamplings
                (other sizes work, with resampling in the decoder).
            date_mask: Optional ``(B, T)`` boolean date mask (True = real date); padded dates get
                zero attention everywhere, so they do not change the output.
            positions: Optional ``(B, T)`` date positions (days), default ``0..T-1``.

        Returns:
            Logits ``(B, K, H, W)``.
        """
        mask = check_date_mask(x, date_mask)
        b, t = x.shape[:2]

        def per_date(f: nn.Module, y: Tensor) -> Tensor:
            out = f(y.flatten(0, 1))
            return out.view(b, t, *out.shape[1:])

        maps = [per_date(self.in_conv, x)]
        for block in self.down_blocks:
            maps.append(per_date(block, maps[-1]))
        out, attn = self.temporal_encoder(maps[-1], mask, positions, return_attention=True)
        for i, block in enumerate(self.up_blocks):
            out = block(out, _attention_aggregate(maps[-(i + 2)], attn))
        return self.out_conv(out)


# --------------------------------------------------------------------------- ResNet-18


class ResNet18Classifier(ResNet):
    """torchvision ResNet-18 (random init) with ``in_channels`` input bands.

    Args:
        in_channels: Input bands (EuroSAT MS: 13).
        num_classes: Classes (EuroSAT: 10).

    Attributes:
        task: ``"classification"``: forward returns ``(B, K)`` logits.
        temporal: False.
    """

    task = "classification"
    temporal = False

    def __init__(self, in_channels: int = 13, num_classes: int = 10) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")


# --------------------------------------------------------------------------- builders


def build_unet3d(in_channels: int = 10, num_classes: int = 20, **options: Any) -> UNet3D:
    """Build the 3D U-Net baseline.

    Args:
        in_channels: Spectral bands.
        num_classes: Output classes.
        **options: ``feats`` (width multiplier, default 8 -> 1.55 M parameters).

    Returns:
        The model.
    """
    return UNet3D(in_channels, num_classes, **options)


def build_utae(in_channels: int = 10, num_classes: int = 20, **options: Any) -> UTAE:
    """Build U-TAE (default: the published PASTIS configuration, 1.09 M parameters).

    Args:
        in_channels: Spectral bands.
        num_classes: Output classes.
        **options: Keyword arguments of :class:`UTAE`.

    Returns:
        The model.
    """
    return UTAE(in_channels, num_classes, **options)


def build_resnet18_classifier(
    in_channels: int = 13, num_classes: int = 10, **options: Any
) -> ResNet18Classifier:
    """Build a randomly initialised ResNet-18 image classifier (EuroSAT warm-up).

    Args:
        in_channels: Input bands.
        num_classes: Classes.
        **options: None are supported; any given raise ``TypeError``.

    Returns:
        The model, returning ``(B, K)`` logits.
    """
    if options:
        raise TypeError(f"build_resnet18_classifier takes no options, got {sorted(options)}")
    return ResNet18Classifier(in_channels, num_classes)
