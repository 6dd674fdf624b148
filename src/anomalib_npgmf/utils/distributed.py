"""Small DDP helpers: a statistic computed on data must come out the same on 1 rank or N ranks.

Here, below metrics and models, because both use them.
"""

from collections.abc import Hashable, Sequence

import torch
from torch import distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op on one process) and return it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_unique_by_key(keys: Sequence[Hashable], values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gather ``values`` from all ranks and keep one per key, ordered by key.

    A ``DistributedSampler`` pads the last batch with repeated samples, so plain concatenation would count some
    images twice and give another quantile than one process would. Keying by image path removes the padding and
    makes the result independent of the number of ranks.
    """
    pairs = list(zip(keys, (value.detach().cpu() for value in values), strict=True))
    if is_distributed():
        gathered: list[list] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, pairs)
        pairs = [pair for rank_pairs in gathered for pair in rank_pairs]
    unique = dict(sorted(pairs, key=lambda pair: str(pair[0])))
    return list(unique.values())
