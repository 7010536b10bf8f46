"""Batch augmentations on the training device: flips and 90-degree rotations.

:class:`FlipRotate` draws one element of the dihedral group D4 (identity, the three
90-degree rotations, and the four flips) per sample and applies it to the image and to
every mask of the batch identically. ``(B,T,C,H,W)`` series are folded to
``(B,T*C,H,W)`` first (a spatial transform does not care about T), so one code path
serves composites and time series.

The transforms are exact index permutations (a transpose view and ``flip`` per sample,
written once into a preallocated batch), so image values and class labels are never
resampled. Draws come from ``generator`` or the global torch RNG on the CPU (no device
sync); the tensors stay on their device.

Why not kornia (issue 4 asked for it; measured with ``benchmarks/bench_loader.py``,
2026-11-22, 2-vCPU EPYC Zen 5, kornia 0.9.0, torch 2.14):

* exactness: ``RandomRotation90`` warps through an affine grid. With kornia's default
  ``resample="bilinear"`` 0 of 64 samples came out as an exact flip/rotation (max error
  0.23 on reflectances up to 10000, even for the 0-degree draw); with
  ``resample="nearest", align_corners=True`` (:func:`kornia_flip_rotate`) 64 of 64 were
  exact, image and labels, for 16 to 512 px patches. So kornia *can* be exact.
* speed, per batch with label and validity masks, medians of interleaved runs on a
  machine at load average 9-15 (lower bounds, noisy): 1 thread, 16x10x64x64 FlipRotate
  1.05 ms vs kornia 20 ms (19x), 16x32x10x64x64 series 169 vs 536 ms (3.2x; a plain copy
  of the batch takes 122 ms); 2 threads (``bench_loader.py``, two runs) 1.4-18 vs
  166-210 ms (11-118x) and 497-515 vs 1110-1166 ms (2.2-2.3x). kornia builds a sampling
  grid and gathers through ``grid_sample`` where a 90-degree rotation is a transpose.

Kornia is more than 2x slower for both shapes, so training uses :class:`FlipRotate`;
:func:`kornia_flip_rotate` keeps the exact kornia configuration for comparison or for
users who want a kornia ``AugmentationSequential``.
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
        flags = params.tolist()  # CPU: no device sync
        out = []
        for x in (image, *masks):
            if x.shape[0] != batch or x.shape[-2:] != image.shape[-2:]:
                raise ValueError(
                    f"mask shape {tuple(x.shape)} does not match image {tuple(image.shape)}"
                )
            y, shape = _fold(x)
            out.append(_permute_samples(y, flags).reshape(shape))
        return out[0] if not masks else tuple(out)


def _permute_samples(y: torch.Tensor, flags: list[list[bool]]) -> torch.Tensor:
    """Apply each sample's D4 element to ``y`` ``(B,K,H,W)`` into one new tensor.

    One pass per sample: a transpose is a view, a flip writes a small temporary that is
    copied into the preallocated output (no batch-sized intermediates).
    """
    out = torch.empty_like(y, memory_format=torch.contiguous_format)
    for i, (transpose, flip_w, flip_h) in enumerate(flags):
        v = y[i].transpose(-1, -2) if transpose else y[i]
        dims = [d for d, on in ((-1, flip_w), (-2, flip_h)) if on]
        out[i].copy_(v.flip(dims) if dims else v)
    return out


def kornia_flip_rotate(masks: int = 1) -> Any:
    """Kornia's flips and 90-degree rotations in their exact configuration, for comparison.

    ``RandomRotation90`` warps through an affine grid; with ``resample="nearest"`` and
    ``align_corners=True`` the grid lands on pixel centres and the warp is an exact
    permutation (bilinear, kornia's default, blends neighbours). ``times`` drawn
    uniformly from ``(-1.5, 2.5)`` and rounded gives the four rotations with equal
    probability; with the horizontal flip that is a uniform draw over D4, as
    :class:`FlipRotate` draws.

    Args:
        masks: Number of masks passed after the image.

    Returns:
        An ``AugmentationSequential`` called as ``aug(image, *masks)`` with ``(B,C,H,W)``
        images and ``(B,1,H,W)`` masks of any dtype.
    """
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomRotation90(times=(-1.5, 2.5), resample="nearest", align_corners=True, p=1.0),
        data_keys=["input"] + ["mask"] * masks,
    )
