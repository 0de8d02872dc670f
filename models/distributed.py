"""Training across processes and machines on PyTorch's own distributed engine.

Two ways in, one code path:
- `torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT ...] -m edgehar
  train ...`: torchrun starts the workers and sets RANK / WORLD_SIZE / LOCAL_RANK /
  MASTER_ADDR; `train` sees them (`Workers.from_env`) and joins the process group.
- `edgehar train --nproc N`: `launch` runs the same workers on this machine through
  torch's elastic launcher (`torch.distributed.launcher.elastic_launch`, what torchrun
  itself calls), rendezvous on 127.0.0.1 at a free port.

The model is wrapped in `DistributedDataParallel` (gloo on CPU, nccl on CUDA). The
trainer's windows are not a `Dataset`: each epoch `WindowSampler.epoch` draws fresh
random windows and shuffles them with a generator seeded by `TrainConfig.seed`, the
same on every rank, so every rank holds the same epoch list; `shard` hands each rank
its disjoint slice with torch's `DistributedSampler` (no shuffle of its own: the epoch
draw already reshuffles every epoch, which is what `set_epoch` gives a `Dataset`).
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from ..errors import EdgeharError

T = TypeVar("T")


@dataclass(frozen=True)
class Workers:
    """Where this process stands among the training workers (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls) -> Workers:
        """The torchrun / elastic-launch environment, joined once; one process when absent."""
        if not launched():
            return cls()
        if not dist.is_initialized():
            # nccl needs one GPU per process; gloo runs anywhere (and on loopback for tests)
            backend = "nccl" if _one_gpu_each() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
            dist.init_process_group(backend)
            atexit.register(dist.destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", "1")))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints progress and writes the bundle and reports."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """This worker's GPU when there is one for each local worker, else the CPU."""
        return torch.device("cuda", self.local_rank) if _one_gpu_each() else torch.device("cpu")

    def threads(self) -> int:
        """Default torch threads: this machine's cores split between its workers."""
        return max(1, (os.cpu_count() or 1) // self.local_world_size)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's disjoint slice of `items` (the same list on every rank).

        `DistributedSampler` pads by repeating the first items so that every rank gets the
        same count: DDP needs the same number of steps on every rank.
        """
        if not self.distributed:
            return list(items)
        sampler = DistributedSampler(items, num_replicas=self.world_size, rank=self.rank, shuffle=False)  # type: ignore[arg-type]
        return [items[i] for i in sampler]

    def part(self, items: Sequence[T]) -> list[T]:
        """This rank's part of `items` for evaluation: no padding, so no item counts twice.

        Fewer items than ranks: every rank takes them all, which leaves a sum-over-ranks
        ratio (correct / seen) unchanged.
        """
        if len(items) < self.world_size:
            return list(items)
        return list(items[self.rank :: self.world_size])

    def per_rank_batch(self, batch_size: int) -> int:
        """Each rank's share of the global batch, so one step sees `batch_size` windows in all."""
        return max(1, -(-batch_size // self.world_size))

    def sum(self, *values: float) -> list[float]:
        """Element-wise sum over ranks (each rank passes its own values)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def from_main(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. generates a cached data set), then the others."""
        if self.distributed and not self.is_main:
            dist.barrier()
        yield
        if self.distributed and self.is_main:
            dist.barrier()


def launched() -> bool:
    """True in one of several workers torchrun (or `launch`) started: WORLD_SIZE > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class WorkerError(EdgeharError):
    """A launched worker stopped on bad input (an EdgeharError); carries its message."""


def _one_gpu_each() -> bool:
    """CUDA with a GPU for every worker on this machine (more workers than GPUs: CPU, gloo)."""
    return torch.cuda.is_available() and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= torch.cuda.device_count()


def launch(fn: Callable[..., T], args: tuple[Any, ...], nproc: int) -> T:
    """Run `fn(*args)` in `nproc` workers on this machine under torch's elastic launcher;
    rank 0's return value. `fn` must be importable by name (workers are spawned).

    A worker that meets bad input (an EdgeharError: a missing data folder, an unknown
    model) exits quietly and its message is raised here as a `WorkerError`, one line as
    in a single process; any other failure keeps torch's report with the traceback.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0",  # port 0: the OS picks a free one
        max_restarts=0, local_addr="127.0.0.1",
    )
    with tempfile.TemporaryDirectory(prefix="edgehar-workers-") as tmp:
        errors = Path(tmp)
        # the launcher's per-worker failure and termination lines; a traceback is re-raised below
        loggers = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.multiprocessing.spawn")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            return elastic_launch(config, _worker)(fn, args, str(errors))[0]
        except ChildFailedError:
            messages = sorted(errors.glob("rank*.txt"))
            if messages:
                raise WorkerError(messages[0].read_text()) from None
            raise
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _worker(fn: Callable[..., T], args: tuple[Any, ...], errors: str) -> T:
    """One launched worker: `fn(*args)`; bad input leaves its message in `errors` and exits 2."""
    try:
        return fn(*args)
    except EdgeharError as exc:
        Path(errors, f"rank{os.environ.get('RANK', '0')}.txt").write_text(str(exc))
        raise SystemExit(2) from None
