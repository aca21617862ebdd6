"""torch.distributed for ``torchrun --nproc-per-node N -m vqfr ...``: rank/world from the
environment, gloo on CPU and NCCL on CUDA, one device per local rank.

Work is sharded by whole batches of the global image order (batch k goes to rank k mod world),
so every image is restored and measured in exactly the batch it would be in a single-process run
with the same batch size: the numbers do not depend on the number of processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batches: list) -> list:
        return batches[self.rank::self.world_size]

    def device(self, requested: str) -> torch.device:
        """``cuda`` means this process's GPU (the local rank's) when distributed."""
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None and self.world_size > 1:
            return torch.device("cuda", self.local_rank)
        return device

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order (on every rank)."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR/PORT); a plain single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistContext(rank, world, local_rank, initialized_here=False)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistContext(rank, world, local_rank, initialized_here=True)
