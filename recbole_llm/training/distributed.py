"""The few collective operations the trainers need under RecBole's DDP (one process per rank).

Every function is a no-op (or returns its input) in a single process, so callers need no branches.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def active(config=None) -> bool:
    """True inside a distributed run (``config["single_spec"]`` False and a process group up)."""
    if config is not None and config["single_spec"] is not False:
        return False
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def barrier():
    if active():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` in one process)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: float) -> float:
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def all_reduce_gradients(params):
    """Average the gradients of ``params`` over the ranks (a parameter without a gradient on one
    rank counts as zero there), in one flat buffer per dtype and device."""
    if not active():
        return
    buckets = {}
    for p in params:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    world = dist.get_world_size()
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
