"""Which training patches a step sees: random boxes-only patches, sharded between ranks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from senland_geo.errors import UserError
from senland_geo.train_config import Box


class BoxSampler(Sampler):
    """Random pixel-aligned patches fully inside one of several boxes (area-weighted).

    TorchGeo's ``RandomGeoSampler`` uses the bounding box of a multi-part ROI, which would
    sample the validation strip between two training boxes; this samples each box alone.

    Args:
        dataset: The GeoDataset (for its time bounds).
        size: Patch side in pixels.
        length: Patches per iteration.
        boxes: Allowed boxes ``(minx, miny, maxx, maxy)``.
        res: Pixel size.
        generator: Source of randomness (re-seed it to reproduce an epoch).
    """

    def __init__(
        self,
        dataset: Any,
        size: int,
        length: int,
        boxes: Sequence[Box],
        res: float,
        generator: torch.Generator,
    ) -> None:
        self.t = dataset.bounds[2]
        self.size = size * res
        self.res = res
        self.length = length
        self.boxes = [b for b in boxes if b[2] - b[0] >= self.size and b[3] - b[1] >= self.size]
        if not self.boxes:
            raise UserError(f"no training box is large enough for {size} px patches: {boxes}")
        self.areas = torch.tensor(
            [float((b[2] - b[0]) * (b[3] - b[1])) for b in self.boxes], dtype=torch.float64
        )
        self.generator = generator

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        for _ in range(self.length):
            i = int(torch.multinomial(self.areas, 1, generator=self.generator))
            minx, miny, maxx, maxy = self.boxes[i]
            nx = int(round((maxx - minx - self.size) / self.res)) + 1
            ny = int(round((maxy - miny - self.size) / self.res)) + 1
            x0 = minx + int(torch.randint(nx, (1,), generator=self.generator)) * self.res
            y0 = miny + int(torch.randint(ny, (1,), generator=self.generator)) * self.res
            yield slice(x0, x0 + self.size), slice(y0, y0 + self.size), self.t


class ShardedBatchSampler(Sampler):
    """Split each global batch of a sampler between DDP ranks (rank ``r`` takes ``r::n``).

    Every rank iterates the same seeded sampler, so together they see exactly the global
    batch a single process would see.
    """

    def __init__(self, sampler: Iterable, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise UserError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.sampler, self.batch_size = sampler, batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list]:
        batch: list = []
        for q in self.sampler:
            batch.append(q)
            if len(batch) == self.batch_size:
                yield batch[self.rank :: self.world_size]
                batch = []
