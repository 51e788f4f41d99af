"""A resumable, rank-sharded batch sampler: the batches of an epoch depend only on (seed, epoch).

Like ``DistributedSampler`` + ``BatchSampler`` with ``drop_last``, plus a start offset so that a
run resumed in the middle of an epoch sees exactly the batches the interrupted run had left.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from xmask3d.errors import ConfigError

__all__ = ["EpochBatchSampler"]


class EpochBatchSampler:
    """Yields lists of dataset indices; every rank gets a disjoint share of one permutation.

    The permutation of epoch ``e`` is ``randperm(num_items)`` from a generator seeded with
    ``seed + e``; the first ``world_size * (num_items // world_size)`` entries are dealt to the
    ranks round-robin, and each rank's share is cut into full batches (the rest is dropped).

    Args:
        num_items: size of the dataset.
        batch_size: items per batch on each rank.
        rank, world_size: this process and the number of processes.
        seed: base seed of the per-epoch permutations.
        shuffle: permute (True) or keep index order (False).
    """

    def __init__(self, num_items: int, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"invalid sampler set-up: batch_size={batch_size}, rank={rank}, "
                              f"world_size={world_size}")
        per_rank = num_items // world_size
        if per_rank < batch_size:
            raise ConfigError(
                f"the training set has {num_items} items, fewer than train.batch_size "
                f"({batch_size}) x {world_size} process(es): lower the batch size or raise "
                "data.loop")
        self.num_items, self.batch_size = num_items, batch_size
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        """Batches in a full epoch on this rank."""
        return (self.num_items // self.world_size) // self.batch_size

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` batches (for resuming)."""
        if not 0 <= start <= len(self):
            raise ValueError(f"start batch {start} outside [0, {len(self)}]")
        self.epoch, self.start = int(epoch), int(start)

    def epoch_indices(self) -> list[int]:
        """This rank's share of the epoch's permutation (before batching)."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=gen)
        else:
            order = torch.arange(self.num_items)
        usable = self.world_size * (self.num_items // self.world_size)
        return order[:usable][self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        share = self.epoch_indices()
        for b in range(self.start, len(self)):
            yield share[b * self.batch_size:(b + 1) * self.batch_size]
