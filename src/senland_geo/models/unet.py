"""U-Nets with ResNet-34 encoders (segmentation_models_pytorch), randomly initialised.

* ``unet-resnet34``: the SenLand seed's model, smp ``Unet("resnet34")``, 24.4M parameters.
* ``unet-resnet34-slim``: the same ResNet-34 block layout (3-4-6-3 basic blocks) at 3/8
  width (stem 24, stages 24-48-96-192 channels, via timm) with a decoder of
  96-64-32-16-16 channels: 3.5M parameters, so the shipped sample checkpoint stays small
  (7 MB in fp16). It is a narrower network, not the seed's model.

No pretrained weights are downloaded (``encoder_weights=None``).
"""

from __future__ import annotations

import warnings

import segmentation_models_pytorch as smp
import torch.nn as nn


def build_unet_resnet34(in_channels: int = 10, num_classes: int = 11, **options) -> nn.Module:
    """Build the full U-Net with a ResNet-34 encoder.

    Args:
        in_channels: Input bands.
        num_classes: Output classes.
        **options: Passed to ``smp.Unet`` (e.g. ``decoder_channels``).
    """
    return smp.Unet(
        encoder_name="resnet34",
        encoder_weights=None,
        in_channels=in_channels,
        classes=num_classes,
        **options,
    )


def build_unet_resnet34_slim(
    in_channels: int = 10, num_classes: int = 11, width: float = 0.375, **options
) -> nn.Module:
    """Build the narrow ResNet-34-layout U-Net used for the shipped sample checkpoint.

    Args:
        in_channels: Input bands.
        num_classes: Output classes.
        width: Channel multiplier of the ResNet-34 stages (1.0 = 64-128-256-512).
        **options: ``decoder_channels`` override.
    """
    stages = tuple(int(round(c * width)) for c in (64, 128, 256, 512))
    decoder = tuple(options.pop("decoder_channels", (96, 64, 32, 16, 16)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smp.Unet(
            encoder_name="tu-resnet34",
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            decoder_channels=decoder,
            channels=stages,
            stem_width=stages[0],
            **options,
        )
