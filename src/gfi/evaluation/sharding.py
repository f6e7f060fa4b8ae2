"""Sharding ``gfi eval`` across processes (``torchrun``, or a job array).

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` set) rank r takes the images i
(dataset order) with i % WORLD_SIZE == r that have no line yet; after a ``torch.distributed``
barrier (gloo on CPU, nccl on GPU) rank 0 merges the parts and writes the summary. With
``RANK``/``WORLD_SIZE`` but no ``MASTER_ADDR`` (e.g. a job array) each rank writes its part and
exits; a later run with the same options and no ``WORLD_SIZE`` finds every image done, merges
and summarises.
"""

from __future__ import annotations

import datetime
import os

import torch

from gfi.evaluation.experiment import EvalError


class Shard:
    """This process's place among ``WORLD_SIZE`` (torchrun's environment variables)."""

    def __init__(self, device: torch.device) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        if not 0 <= self.rank < self.world:
            raise EvalError(f"RANK={self.rank} is outside WORLD_SIZE={self.world}")
        self.group = False
        self.backend = ""
        if self.world > 1 and os.environ.get("MASTER_ADDR"):
            import torch.distributed as dist

            self.backend = "nccl" if device.type == "cuda" else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(self.backend, timeout=datetime.timedelta(days=2))
            self.group = True

    def mine(self, indices: list[int]) -> list[int]:
        """The images of ``indices`` this process scores (stable whatever the others did)."""
        return [i for i in indices if i % self.world == self.rank]

    @property
    def merges(self) -> bool:
        """Whether this process merges the parts and summarises: rank 0 when every rank has
        finished (one process, or a ``torch.distributed`` group after its barrier)."""
        return self.rank == 0 and (self.world == 1 or self.group)

    def barrier(self) -> None:
        if self.group:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                dist.barrier()

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.group = False
