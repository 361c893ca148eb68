"""Where training batches come from: all training showers on the device, or a buffer streamed from the file.

Training showers that fit in :data:`RESIDENT_BYTES` are read once and kept on the training
device (the fastest way: a batch is one gather). Larger ones (datasets 2 and 3) are streamed:
a buffer of :data:`BUFFER_BYTES` holds random blocks of consecutive training rows, batches are
drawn from it, and it is replaced every ``buffer rows / batch size`` iterations (each buffered
shower is drawn about once) by the next buffer, read in a background thread meanwhile. Buffer
``k`` is a function of the seed and ``k`` only, so a resumed run draws the same batches.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from caloforge.data.showers import ShowerSet
from caloforge.data.source import ShowerFile, Showers, read_rows
from caloforge.models.base import Batch

__all__ = ["BLOCK_ROWS", "BUFFER_BYTES", "RESIDENT_BYTES", "BatchSource", "ResidentBatches", "StreamedBatches",
           "batch_source"]

RESIDENT_BYTES = 1 << 30
"""Training showers up to this size (1 GiB of float32) are kept in memory; larger ones are streamed."""
BUFFER_BYTES = 256 << 20
"""Size of the streaming buffer (two are held: the one in use and the next)."""
BLOCK_ROWS = 32
"""Consecutive training rows read together into a buffer."""


class BatchSource(Protocol):
    """Draws training batches on a device."""

    def to(self, device: torch.device) -> None:
        """Move (or prepare) the data for ``device``."""

    def sample(self, n: int, generator: torch.Generator, iteration: int) -> Batch:
        """A random batch of ``n`` showers (with replacement) for ``iteration``."""

    def close(self) -> None:
        """Stop background reading."""


def _tensors(data: ShowerSet, device: torch.device | str) -> Batch:
    return Batch(torch.as_tensor(data.energies, dtype=torch.float32).to(device),
                 torch.as_tensor(data.showers).to(device),
                 {k: torch.as_tensor(v, dtype=torch.float32).to(device) for k, v in data.conditions.items()})


def _draw(pool: Batch, n: int, generator: torch.Generator) -> Batch:
    size = pool.energies.shape[0]
    idx = torch.randint(size, (min(n, size),), generator=generator, device=pool.energies.device)
    return Batch(pool.energies[idx], pool.showers[idx], {k: v[idx] for k, v in pool.conditions.items()})


class ResidentBatches:
    """All training showers on the device."""

    def __init__(self, data: ShowerSet) -> None:
        self.pool = _tensors(data, "cpu")

    def to(self, device: torch.device) -> None:
        self.pool = Batch(self.pool.energies.to(device), self.pool.showers.to(device),
                          {k: v.to(device) for k, v in self.pool.conditions.items()})

    def sample(self, n: int, generator: torch.Generator, iteration: int) -> Batch:
        return _draw(self.pool, n, generator)

    def close(self) -> None:
        pass


class StreamedBatches:
    """Batches from a buffer of random blocks of training rows, refilled from the file in the background.

    Args:
        data: The file.
        rows: The training rows (strictly increasing).
        batch_size: Showers per batch (sets how often the buffer is replaced).
        seed: Seed of the block choice.
        buffer_bytes: Size of one buffer.
    """

    def __init__(self, data: ShowerFile, rows: NDArray[np.int64], batch_size: int, seed: int,
                 buffer_bytes: int | None = None) -> None:
        buffer_bytes = BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        self.data = data
        self.blocks = np.array_split(rows, max(1, -(-rows.size // BLOCK_ROWS)))
        per_buffer = max(1, buffer_bytes // (4 * data.n_voxels * BLOCK_ROWS))
        self.blocks_per_buffer = min(len(self.blocks), max(per_buffer, -(-4 * batch_size // BLOCK_ROWS)))
        self.refresh_every = max(1, self.blocks_per_buffer * BLOCK_ROWS // batch_size)
        self.seed = seed
        self.device = torch.device("cpu")
        self._pool: Batch | None = None
        self._index = -1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caloforge-buffer")
        self._next: tuple[int, Future[ShowerSet]] | None = None

    def to(self, device: torch.device) -> None:
        self.device = device
        self._pool, self._index = None, -1

    def buffer_rows(self, index: int) -> NDArray[np.int64]:
        """The rows of buffer ``index`` (sorted)."""
        rng = np.random.default_rng([self.seed, index])
        chosen = rng.choice(len(self.blocks), size=self.blocks_per_buffer, replace=False)
        return np.sort(np.concatenate([self.blocks[i] for i in chosen]))

    def _read(self, index: int) -> ShowerSet:
        return read_rows(self.data, self.buffer_rows(index))

    def sample(self, n: int, generator: torch.Generator, iteration: int) -> Batch:
        index = iteration // self.refresh_every
        if index != self._index or self._pool is None:
            self._pool = None  # the old buffer is freed before the next one arrives
            if self._next is not None and self._next[0] == index:
                data = self._next[1].result()
            else:
                data = self._read(index)
            self._pool, self._index = _tensors(data, self.device), index
            self._next = (index + 1, self._executor.submit(self._read, index + 1))
        return _draw(self._pool, n, generator)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pool, self._next = None, None


def batch_source(data: Showers, rows: NDArray[np.int64], batch_size: int, seed: int,
                 resident_bytes: int | None = None) -> BatchSource:
    """Resident batches when the training rows fit in ``resident_bytes`` (default :data:`RESIDENT_BYTES`)
    or are in memory anyway, else streamed."""
    resident_bytes = RESIDENT_BYTES if resident_bytes is None else resident_bytes
    if isinstance(data, ShowerSet) or rows.size * 4 * data.n_voxels <= resident_bytes:
        return ResidentBatches(read_rows(data, rows))
    return StreamedBatches(data, rows, batch_size, seed)
