"""torch.distributed set-up from torchrun's environment: gloo on CPU, nccl on GPU, rank helpers.

A process started by ``torchrun`` (single- or multi-node rendezvous) finds ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment; a plain
``python -m xmask3d`` run has none of them and runs as the only rank.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from xmask3d.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "DistInfo", "all_gather_objects", "all_reduce_max", "all_reduce_mean", "barrier",
    "broadcast_object", "cleanup_distributed", "get_rank", "get_world_size",
    "init_distributed", "is_distributed", "is_main_process", "seed_all",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        device: the device this process computes on.
        backend: ``"gloo"``, ``"nccl"`` or ``""`` when not distributed.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={device!r}; choose auto, cpu or cuda")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but torch sees no CUDA device")
    if not use_cuda:
        return torch.device("cpu")
    index = local_rank % max(torch.cuda.device_count(), 1)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Start the process group when launched by torchrun; otherwise describe a single process.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        timeout_s: collective timeout of the process group.

    Returns:
        The rank, world size, local rank, device and backend of this process.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = _pick_device(device, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, "")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "init_method": "env://",
                                  "timeout": timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    logger.info("distributed: rank %d/%d (local %d) on %s with %s", rank, world, local_rank, dev,
                backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def cleanup_distributed(*, wait: bool = True) -> None:
    """Destroy the process group (no-op when not distributed).

    Args:
        wait: meet the other ranks at a barrier first. Pass ``False`` when this rank is failing
            on its own: the others may be blocked in a collective it will never join, and
            torchrun stops them once this process has exited.
    """
    if is_distributed():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ranks (a copy; the input when not distributed)."""
    if not is_distributed():
        return values
    t = values.detach().to(_collective_device(), torch.float64).clone()
    dist.all_reduce(t)
    return (t / get_world_size()).to(values.device)


def all_reduce_max(value: float) -> float:
    """Maximum of a Python number over ranks."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself when not distributed)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, ordered by rank (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
