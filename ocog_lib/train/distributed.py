"""Data-parallel training (torch DDP): N processes on one machine, one global batch.

`launch` starts `nproc` processes itself (spawn: each imports torch and opens its own
files, nothing GDAL- or thread-bearing is forked), joins them over 127.0.0.1 with gloo
(CPU) or NCCL (one process per GPU), and returns rank 0's result. Its ranks talk back on
one queue: rank 0's progress events, every rank's result or error. A rank that fails
gets the others killed by PID at once (a survivor would otherwise wait in a collective
until the process-group timeout), and the error names the rank and its cause.

`Ranks` is what the training loop asks of a rank: its share of each global batch (rank r
takes windows [r*b, (r+1)*b) of every batch of B = N*b, so the N ranks together read the
single-process epoch, each window once), sums across ranks, one clock, the model wrapped
in DistributedDataParallel (gradients averaged) with BatchNorm over the global batch.
`SOLO` is the one-process case: every method is the identity.
"""

from __future__ import annotations

import os
import pickle
import queue as queue_mod
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ocog_lib.errors import InputError, OcogError

TIMEOUT_S = 600.0  # process-group timeout: a collective waits this long for a lost rank
POLL_S = 0.2


class RankFailed(OcogError):
    """A training rank raised or died; the message names the rank and the cause."""

    def __init__(self, rank: int, world: int, cause: str):
        self.rank, self.world, self.cause = rank, world, cause
        super().__init__(f"training rank {rank} of {world} failed: {cause}")


# ---- what a rank does --------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (rank 0 of 1: no collectives)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def per_rank(self, batch_size: int) -> int:
        return batch_size // self.world

    def share(self, windows: np.ndarray, batch_size: int) -> np.ndarray:
        """This rank's part of each whole global batch of `windows`, in batch order."""
        if self.world == 1:
            return windows
        n, b = len(windows) // batch_size, batch_size // self.world
        return windows[: n * batch_size].reshape(n, self.world, b, 3)[:, self.rank].reshape(-1, 3)

    def device(self, device: torch.device) -> torch.device:
        """One GPU per rank under NCCL; the CPU is shared."""
        if device.type != "cuda" or self.world == 1:
            return device
        torch.cuda.set_device(self.rank)
        return torch.device("cuda", self.rank)

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def agree(self, seconds: float) -> float:
        """The slowest rank's clock: every rank then sees the same time budget spent."""
        if self.world == 1:
            return seconds
        t = torch.tensor([seconds], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def sum_counts(self, counts: np.ndarray) -> np.ndarray:
        if self.world == 1:
            return counts
        t = torch.from_numpy(counts.copy()).to(_collective_device())
        return self.all_sum(t).cpu().numpy()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sync_bn(self, model: nn.Module) -> nn.Module:
        """BatchNorm statistics over the global batch, as one process computes them."""
        if self.world == 1:
            return model
        if next(model.parameters()).device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return _to_global_bn(model)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module training calls: DDP averages gradients across ranks in backward."""
        if self.world == 1:
            return model
        dev = next(model.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


SOLO = Ranks()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if (
        dist.get_backend() == "nccl") else torch.device("cpu")  # fmt: skip


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are all-reduced (with autograd) across the
    ranks: torch's SyncBatchNorm runs on GPUs only, and per-rank statistics over a
    fraction of the batch would change what is learned. Same parameters and buffers as
    BatchNorm2d, so its state dict loads into the plain model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype)
        total = _AllSum.apply(torch.cat([x.sum((0, 2, 3)), count]))
        n = float(total[c].detach())
        mean = total[:c] / n
        d = x - mean[None, :, None, None]
        var = _AllSum.apply((d * d).sum((0, 2, 3))) / n  # two passes: no cancellation
        if self.track_running_stats:
            self._track(mean.detach(), var.detach(), n)
        y = d * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean, alpha=m)
        self.running_var.mul_(1 - m).add_(var * (n / max(n - 1, 1)), alpha=m)


class _AllSum(torch.autograd.Function):
    """Sum across ranks; the gradient of each rank's input is the sum of all ranks'
    output gradients (torch.distributed.nn's version is deprecated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


def _to_global_bn(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d under `module` swapped, in place, for a GlobalBatchNorm2d holding
    the same parameter and buffer objects (call before the optimizer is made)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            bn.weight, bn.bias = child.weight, child.bias
            bn.running_mean, bn.running_var = child.running_mean, child.running_var
            bn.num_batches_tracked = child.num_batches_tracked
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            _to_global_bn(child)
    return module


# ---- the launch --------------------------------------------------------------------------


def check_nproc(nproc: int, device: torch.device) -> str:
    """The backend for `nproc` processes on `device`: gloo on the CPU, NCCL on GPUs."""
    cores = os.cpu_count() or 1
    if nproc < 1 or nproc > 4 * cores:
        raise InputError(f"nproc {nproc}", f"must be between 1 and {4 * cores} (4 x cores)")
    if device.type != "cuda":
        return "gloo"
    gpus = torch.cuda.device_count()
    if nproc > gpus:
        raise InputError(f"nproc {nproc}", f"NCCL runs one process per GPU; {gpus} visible")
    return "nccl"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(target: Callable, args: tuple, nproc: int, backend: str, *,
           progress: Callable[[dict], None] | None = None, timeout: float = TIMEOUT_S,
           threads: int | None = None):
    """`target(*args, ranks, progress)` in `nproc` fresh processes; rank 0's return value.
    `threads`: torch threads per rank (default: the cores shared out)."""
    ctx = torch.multiprocessing.get_context("spawn")
    q = ctx.Queue()
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    init = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=_rank_main, name=f"ocog-train-rank{r}", daemon=False,
                         args=(target, args, r, nproc, backend, init, timeout, threads, q))
             for r in range(nproc)]  # fmt: skip
    try:
        for p in procs:
            p.start()
        return _collect(procs, q, progress)
    finally:
        _reap(procs)
        q.close()
        q.join_thread()


def _rank_main(target: Callable, args: tuple, rank: int, world: int, backend: str, init: str,
               timeout: float, threads: int, q) -> None:
    """One rank: join the group, run, send the result (or the error) to the parent."""
    torch.set_num_threads(threads)

    def progress(ev: dict) -> None:
        _send(q, "progress", rank, ev)

    try:
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout))
        out = target(*args, Ranks(rank, world), progress if rank == 0 else None)
    except BaseException as exc:  # noqa: BLE001 - reported (before the peers see the
        # connection drop), then exit 1 without tearing down: the parent kills the rest
        tb = "".join(traceback.format_exception(exc)[-8:])
        _send(q, "error", rank, (f"{type(exc).__name__}: {exc}", tb))
        q.close()
        q.join_thread()
        os._exit(1)
    _send(q, "done", rank, out if rank == 0 else None)
    dist.destroy_process_group()


def _send(q, kind: str, rank: int, payload: object) -> None:
    """Pickled here, as bytes: torch's queue would share tensors by file descriptor, gone
    when the rank exits before the parent reads them."""
    q.put((kind, rank, pickle.dumps(payload)))


def _receive(q) -> tuple[str, int, object]:
    kind, rank, blob = q.get(timeout=POLL_S)
    return kind, rank, pickle.loads(blob)


def _collect(procs: list, q, progress: Callable[[dict], None] | None):
    """Rank 0's result, relaying progress; the first error or silent death raises."""
    world, done, result, errors = len(procs), set(), None, {}
    while len(done) < world:
        try:
            kind, rank, payload = _receive(q)
        except queue_mod.Empty:
            if any(p.exitcode is not None and r not in done for r, p in enumerate(procs)):
                raise _failure(procs, q, done, errors) from None
            continue
        if kind == "progress":
            if progress is not None:
                progress(payload)
        elif kind == "error":
            errors[rank] = payload
            raise _failure(procs, q, done, errors)
        else:
            done.add(rank)
            result = payload if rank == 0 else result
    return result


def _failure(procs: list, q, done: set, errors: dict) -> RankFailed:
    """The error naming the rank that started it: one that died without a word (its peers'
    errors are then only lost connections), else the first to report; the others' first
    lines follow. Waits a moment for the rest to report or exit."""
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            kind, rank, payload = _receive(q)
        except queue_mod.Empty:
            continue
        if kind == "error":
            errors.setdefault(rank, payload)
        elif kind == "done":
            done.add(rank)
    silent = [r for r, p in enumerate(procs)
              if p.exitcode not in (None, 0) and r not in errors and r not in done]
    if silent:
        first = silent[0]
        cause = f"exited with code {procs[first].exitcode} without a result"
    else:  # a lost peer is a consequence: the rank with its own error is the cause
        first = min(errors, key=lambda r: (_peer_lost(errors[r][0]), list(errors).index(r)))
        cause = f"{errors[first][0]}\n{errors[first][1]}"
    also = [f"rank {r}: {msg.splitlines()[0][:200]}" for r, (msg, _) in errors.items()
            if r != first]  # fmt: skip
    return RankFailed(first, len(procs), cause + ("\nthen " + "; ".join(also) if also else ""))


def _peer_lost(message: str) -> bool:
    return any(k in message for k in ("Connection reset", "Connection closed", "gloo", "NCCL"))


def _reap(procs: list) -> None:
    """Every rank gone: those still running are killed (SIGKILL, by PID) and reaped."""
    for p in procs:
        if p.pid is not None and p.is_alive():
            p.kill()
    for p in procs:
        if p.pid is not None:
            p.join(10)
