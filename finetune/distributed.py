"""One process or many: the same fine-tune code under plain ``python`` and under ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; then every process joins the default group
(NCCL on CUDA, gloo on CPU), takes GPU ``LOCAL_RANK``, and the model is wrapped in DistributedDataParallel.
Without them nothing is initialised and the helpers below are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from cavnet.errors import CavnetError
from cavnet.extract.device import resolve_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str) -> tuple[DistEnv, torch.device]:
    """Join the process group when launched by torchrun; the device this process trains on."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(), resolve_device(device)
    env = DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise CavnetError(f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} GPUs here")
        dev = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=30),
                                 device_id=dev if dev.type == "cuda" else None)
    return env, dev


def teardown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def gather_with_grad(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """``(b, ...)`` from every process -> ``(W * b, ...)`` in rank order; gradients flow back to each
    process's own rows (summed over the processes that used them), so a loss computed on the gathered
    batch by every process gives, after DDP's gradient averaging, the gradient of that loss."""
    if not env.active:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """``(b, ...)`` from every process -> ``(W * b, ...)``, no gradient (every b must be equal)."""
    if not env.active:
        return x
    parts = [torch.empty_like(x) for _ in range(env.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Any picklable object from every process, in rank order."""
    if not env.active:
        return [obj]
    out: list[Any] = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def mean(value: float, env: DistEnv, device: torch.device) -> float:
    """The mean of a float over the processes."""
    if not env.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / env.world


def wrap(model: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` under torchrun; ``model`` itself otherwise."""
    if not env.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)  # rank 0's BN statistics are broadcast each step
