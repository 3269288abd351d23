"""Training on several processes with PyTorch's DistributedDataParallel, started by ``torchrun``: the one home.

``fit`` (and ``run_training``) call :func:`join`; outside ``torchrun`` nothing here changes what they do. Under it:

* one process per GPU (NCCL, ``cuda:LOCAL_RANK``) or per CPU worker (gloo, ``--device cpu``);
* the global batch stays the one given: each process takes ``batch_size / world_size`` images through a
  ``DistributedSampler`` reseeded every epoch (:func:`shard_train_loader`), so together they see the global batches
  of one process with ``DistributedSampler(num_replicas=1)`` and the same seed;
* evaluation is sharded without padding (:class:`Shard`) and summed across processes (:func:`sum_across`);
* rank 0 alone prints and writes; checkpoints hold the unwrapped model, so they load anywhere.

Commands::

    torchrun --standalone --nproc-per-node 2 -m eva_utils train --out runs/r18     # one machine, 2 GPUs
    eva-utils train --nproc 2 --out runs/r18                                       # the same, started for you
    eva-utils train --nproc 2 --device cpu --data sample --out runs/cpu            # gloo on the CPU
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        --rdzv-id run1 -m eva_utils train --out runs/r18                          # each of two machines
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from eva_utils.core.checks import positive_int
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import PROCESS_ERRORS, UserError
from eva_utils.data.device_loader import DeviceLoader
from eva_utils.data.loaders import SeededLoader

__all__ = ["Group", "ProcessFailedError", "Shard", "barrier", "broadcast_buffers", "current", "distribute", "join", "launch",
           "leave", "per_process_batch", "shard_eval_loader", "shard_train_loader", "sum_across", "under_torchrun",
           "unwrap", "wrap"]

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Group:
    """This process's place in a run: ``rank`` of ``world_size``, on ``device`` with ``backend``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes."""
        return self.rank == 0


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its environment variables are set)."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def current() -> Group | None:
    """The group this process has joined, or None (a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    backend = dist.get_backend()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    return Group(dist.get_rank(), dist.get_world_size(), local, device, backend)


def join(device: str | torch.device | None = "auto", timeout_minutes: float = 30.0) -> Group | None:
    """Under ``torchrun``, join the process group (once): NCCL on GPUs (``cuda:LOCAL_RANK``), gloo on the CPU; else None.

    Raises:
        UserError: a GPU asked for but fewer GPUs than processes on this machine.
    """
    group = current()
    if group is not None or not under_torchrun():
        return group
    wanted = resolve_device(device)
    local, local_world = int(os.environ["LOCAL_RANK"]), int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if wanted.type == "cuda":
        if torch.cuda.device_count() < local_world:
            raise UserError(f"{local_world} processes on this machine but {torch.cuda.device_count()} GPUs: start "
                            f"{torch.cuda.device_count()} (one process per GPU), or pass device='cpu'", param="device")
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return current()


def leave() -> None:
    """Leave the process group (at the end of a run under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(group: Group | None) -> None:
    """Wait until every process gets here (nothing in a single process)."""
    if group is not None:
        dist.barrier()


def per_process_batch(batch_size: int, world_size: int) -> int:
    """The images each process takes so that the global batch stays ``batch_size``.

    Raises:
        UserError: ``batch_size`` is not a multiple of ``world_size``.
    """
    if batch_size % world_size:
        below, above = batch_size // world_size * world_size, -(-batch_size // world_size) * world_size
        raise UserError(f"batch_size {batch_size} does not divide among {world_size} processes (each takes an equal "
                        f"share of the global batch): use {below or world_size} or {above}", param="batch_size")
    return batch_size // world_size


class Shard(Sampler[int]):
    """Positions ``rank, rank + world_size, ...`` of a data set: every item in exactly one shard, no padding."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


def _like(loader: DataLoader, batch_size: int, sampler: Sampler, drop_last: bool) -> DataLoader:
    """The same loader (a ``SeededLoader`` stays one, a ``DeviceLoader`` shards what it holds) but with ``sampler``."""
    if isinstance(loader, DeviceLoader):
        return loader.shard(sampler, batch_size, drop_last)
    kind = SeededLoader if isinstance(loader, SeededLoader) else DataLoader
    return kind(
        loader.dataset, batch_size=batch_size, sampler=sampler, num_workers=loader.num_workers,
        pin_memory=loader.pin_memory, drop_last=drop_last, worker_init_fn=loader.worker_init_fn,
        generator=loader.generator, persistent_workers=False,
    )


def shard_train_loader(loader: DataLoader, group: Group, seed: int) -> DataLoader:
    """This process's share of a training loader: a ``DistributedSampler`` (call ``set_epoch``), batch / world_size."""
    if loader.batch_size is None:
        raise UserError("the training loader must have a batch size to share among processes", param="train_loader")
    batch = per_process_batch(loader.batch_size, group.world_size)
    sampler = DistributedSampler(loader.dataset, group.world_size, group.rank, shuffle=True, seed=seed,
                                 drop_last=loader.drop_last)
    return _like(loader, batch, sampler, loader.drop_last)


def shard_eval_loader(loader: DataLoader, group: Group) -> DataLoader:
    """This process's share of an evaluation loader: every image in exactly one process (no padding)."""
    return _like(loader, loader.batch_size or 1, Shard(len(loader.dataset), group.rank, group.world_size), False)


def distribute(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, group: Group | None, seed: int,
               sync_batchnorm: bool = False) -> tuple[nn.Module, DataLoader, DataLoader]:
    """What ``fit`` trains and its loaders under ``group``: the model in DDP (see :func:`wrap`), this process's
    shares of the loaders; all three as they are in a single process (``group`` None)."""
    if group is None:
        return model, train_loader, test_loader
    return (wrap(model, group, sync_batchnorm), shard_train_loader(train_loader, group, seed),
            shard_eval_loader(test_loader, group))


def sum_across(values: Sequence[float] | torch.Tensor, group: Group | None) -> torch.Tensor:
    """The element-wise sum of ``values`` over every process (float64 on the CPU); ``values`` itself alone."""
    tensor = torch.as_tensor(values, dtype=torch.float64).clone()
    if group is None:
        return tensor
    moved = tensor.to(group.device)
    dist.all_reduce(moved)
    return moved.cpu()


def wrap(model: nn.Module, group: Group, sync_batchnorm: bool = False) -> nn.Module:
    """``model`` as DistributedDataParallel on ``group.device`` (BatchNorm synchronised across processes if asked).

    ``SyncBatchNorm`` keeps the BatchNorm parameters and state dict keys: optimizers and checkpoints stay valid.

    Raises:
        UserError: ``sync_batchnorm`` on the CPU (PyTorch's SyncBatchNorm runs on GPUs only).
    """
    if sync_batchnorm:
        if group.device.type != "cuda":
            raise UserError("sync_batchnorm needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU (gloo); leave it "
                            "off there (each process then keeps BatchNorm statistics of its own share of the batch)",
                            param="sync_batchnorm")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [group.device.index] if group.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_buffers(model: nn.Module, group: Group | None) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every process, so all evaluate the checkpointed model."""
    if group is None:
        return
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer.data, src=0)


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """torch elastic's own log lines (a process failed, others sent SIGTERM) held back while it runs."""
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.distributed.launcher")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class ProcessFailedError(RuntimeError):
    """A process of :func:`launch` crashed or was killed: not a mistake in the user's input."""


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m eva_utils <argv>`` on ``nproc`` processes of this machine, as ``torchrun --standalone`` does.

    Every process's output goes to the terminal; a failure in one process stops all of them.

    Returns:
        0, or 2 when a process stopped on a user error that it printed itself.

    Raises:
        UserError: ``nproc`` below 1; the processes' user error (said once, not once per process).
        ProcessFailedError: a process crashed or was killed (the message names its rank and exit code).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    nproc = positive_int(nproc, "nproc")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    with tempfile.TemporaryDirectory(prefix="eva_utils_errors") as said, _environment(PROCESS_ERRORS, said):
        try:
            with _quiet_launcher():  # its warnings name no file of the user's; the outcome is said below, in one line
                elastic_launch(config, entrypoint=sys.executable)("-m", "eva_utils", *argv)
        except SignalException as exc:  # Ctrl-C reaches the launcher too: an interrupt, as in one process
            if exc.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            raise
        except ChildFailedError as exc:
            return _failed(exc, nproc, said)
    return 0


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` while the block runs (the processes started in it inherit it)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _failed(exc: Any, nproc: int, said: str) -> int:
    """The outcome of a launch that a process ended: its user error once, an interrupt, or the crash named."""
    stopped = -signal.SIGTERM  # what the launcher sends the others once one fails
    rank, failure = min(exc.failures.items(), key=lambda item: (item[1].exitcode == stopped, item[0]))
    if failure.exitcode == 2:  # a user error: each process that met it left its line in ``said``
        lines = dict.fromkeys(Path(file).read_text() for file in sorted(Path(said).glob("rank*")))
        if lines:
            raise UserError("; ".join(lines))
        return 2
    if failure.exitcode in (130, -signal.SIGINT):
        raise KeyboardInterrupt from None  # each process said "interrupted" and kept its checkpoint
    how = (f"was killed by signal {-failure.exitcode} ({failure.signal_name()})" if failure.exitcode < 0
           else f"failed with exit code {failure.exitcode}")
    raise ProcessFailedError(f"process {rank} of {nproc} {how} (its error, if any, is printed above); the other "
                             "processes were stopped") from None
