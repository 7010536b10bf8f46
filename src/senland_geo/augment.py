"""Batch augmentations on the training device: flips and 90-degree rotations.

:class:`FlipRotate` draws one element of the dihedral group D4 (identity, the three
90-degree rotations, and the four flips) per sample and applies it to the image and to
every mask of the batch identically. ``(B,T,C,H,W)`` series are folded to
``(B,T*C,H,W)`` first (a spatial transform does not care about T), so one code path
serves composites and time series.

The transforms are exact index permutations (``flip`` and ``transpose`` of the selected
samples only, gathered with ``index_select``/``index_copy``), so image values and class
labels are never resampled.
kornia's ``RandomRotation90`` warps through an affine grid with bilinear interpolation
(measured: up to 0.015 error on reflectances of ~1000; speed: see the loader benchmark);
:func:`kornia_flip_rotate` builds that pipeline for comparison or when a kornia
``AugmentationSequential`` is wanted.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


def _fold(x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    """(B,T,C,H,W) or (B,C,H,W) or (B,H,W) -> (B,K,H,W) and the original shape."""
    shape = x.shape
    if x.dim() == 3:
        return x.unsqueeze(1), shape
    if x.dim() == 4:
        return x, shape
    if x.dim() == 5:
        return x.reshape(shape[0], shape[1] * shape[2], shape[3], shape[4]), shape
    raise ValueError(f"expected (B,H,W), (B,C,H,W) or (B,T,C,H,W), got shape {tuple(shape)}")


class FlipRotate(nn.Module):
    """Random flips and 90-degree rotations, identical for image and masks, batched.

    Args:
        p: Probability of each of the three elementary steps (transpose, horizontal
            flip, vertical flip); 0.5 gives all 8 D4 elements with equal probability.
        rotate: Include transposes (hence 90-degree rotations); needs square patches.
        generator: Optional CPU generator for reproducible draws.

    Call with ``image`` and any number of masks (``(B,H,W)``, ``(B,1,H,W)``, ...) of the
    same batch and spatial size; returns them transformed, in the same shapes and dtypes.
    """

    def __init__(
        self, p: float = 0.5, rotate: bool = True, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"probability p={p} must be within [0, 1]")
        self.p = p
        self.rotate = rotate
        self.generator = generator
        self.last_params: torch.Tensor | None = None

    def draw(self, batch: int) -> torch.Tensor:
        """Draw ``(batch, 3)`` bools: transpose, flip W (horizontal), flip H (vertical)."""
        params = torch.rand(batch, 3, generator=self.generator) < self.p
        if not self.rotate:
            params[:, 0] = False
        return params

    def forward(
        self, image: torch.Tensor, *masks: torch.Tensor, params: torch.Tensor | None = None
    ) -> Any:
        """Transform ``image`` and ``masks`` with the same per-sample D4 element.

        Args:
            image: ``(B,C,H,W)`` or ``(B,T,C,H,W)``.
            *masks: Tensors with the same batch and spatial size (e.g. ``(B,H,W)``).
            params: Optional ``(B, 3)`` bools from :meth:`draw` (else drawn now).

        Returns:
            The transformed image, or a tuple ``(image, *masks)`` when masks are given.
        """
        batch, height, width = image.shape[0], image.shape[-2], image.shape[-1]
        if params is None:
            params = self.draw(batch)
        if params[:, 0].any() and height != width:
            raise ValueError(
                f"90-degree rotations need square patches, got {height} x {width}; "
                "pass rotate=False"
            )
        self.last_params = params
        ops = (
            lambda t: t.transpose(-1, -2),
            lambda t: t.flip(-1),
            lambda t: t.flip(-2),
        )
        picks = [params[:, i].nonzero().squeeze(1) for i in range(3)]  # CPU: no device sync
        picks_dev = [idx.to(image.device, non_blocking=True) for idx in picks]
        out = []
        for x in (image, *masks):
            if x.shape[0] != batch or x.shape[-2:] != image.shape[-2:]:
                raise ValueError(
                    f"mask shape {tuple(x.shape)} does not match image {tuple(image.shape)}"
                )
            y, shape = _fold(x)
            for op, idx, idx_dev in zip(ops, picks, picks_dev, strict=True):
                if idx.numel() == batch:
                    y = op(y)
                elif idx.numel():
                    y = y.index_copy(0, idx_dev, op(y.index_select(0, idx_dev)))
            out.append(y.contiguous().reshape(shape))
        return out[0] if not masks else tuple(out)


def kornia_flip_rotate() -> Any:
    """Build kornia's ``AugmentationSequential`` of flips and 90-degree rotations (image, mask).

    Expects ``(B,C,H,W)`` images and float ``(B,1,H,W)`` masks; rotations are resampled
    (bilinear for the image). Prefer :class:`FlipRotate`.
    """
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(),
        K.RandomVerticalFlip(),
        K.RandomRotation90(times=(0, 3)),
        data_keys=["input", "mask"],
    )
