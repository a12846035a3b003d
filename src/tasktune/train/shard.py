"""Sharded training (FSDP2, ``torch.distributed.fsdp.fully_shard``): what the rest of
tasktune needs to see whole weights and a whole optimizer state.

Under FSDP every process holds 1/N of each parameter (a ``DTensor``) and of AdamW's
moments. Evaluating, saving an adapter and writing a checkpoint read whole tensors, so:

* :func:`whole_weights` all-gathers every parameter on every process for the span of a
  ``with`` block, and stops forward passes from resharding: inside it, the main process
  can generate alone, without communicating (``generate`` is called with
  ``synced_gpus=False``), while its peers wait;
* :func:`full_optimizer_state` gathers the optimizer's moments (every process calls it),
  and :func:`shard_optimizer_state` cuts a whole state back to this process's shards;
* :func:`broadcast_from_main` gives every process the main process's initial values of
  the trainable tensors (a LoRA or prefix initialisation is random, and each process has
  its own seed; DDP broadcasts on its own, FSDP does not).

For a model that is not sharded, every function leaves everything as it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["is_sharded", "whole_weights", "gather_weights", "reshard_weights", "full_optimizer_state",
           "shard_optimizer_state", "broadcast_from_main"]


def _fsdp_modules(model) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model) -> bool:
    """True when ``model`` (or a part of it) was sharded by ``fully_shard``."""
    return bool(_fsdp_modules(model))


def gather_weights(model) -> None:
    """All-gather every parameter of a sharded ``model`` on every process (collective),
    and keep them whole through forward passes until :func:`reshard_weights`; nothing
    for a model that is not sharded."""
    modules = _fsdp_modules(model)
    for m in modules:
        m.set_reshard_after_forward(False, recurse=False)
    for m in modules:
        m.unshard()


def reshard_weights(model, reshard_after_forward: bool = True) -> None:
    """Undo :func:`gather_weights` (every process): back to 1/N per process; forward
    passes reshard again as ``fully_shard`` set them up (the root keeps its weights
    for the backward pass, FSDP2's own default)."""
    modules = _fsdp_modules(model)
    for m in modules:
        m.set_reshard_after_forward(reshard_after_forward and m is not model, recurse=False)
    for m in modules:
        m.reshard()


@contextmanager
def whole_weights(model, reshard_after_forward: bool = True) -> Iterator[None]:
    """Every process enters; inside, ``model``'s parameters are whole plain tensors on each
    process. Nothing happens for a model that is not sharded."""
    if not is_sharded(model):
        yield
        return
    gather_weights(model)
    try:
        yield
    finally:
        reshard_weights(model, reshard_after_forward)


def _whole(value):
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def full_optimizer_state(optimizer) -> dict:
    """``optimizer.state_dict()`` with every sharded tensor gathered whole (collective:
    every process calls it, in the same order)."""
    state = optimizer.state_dict()
    return {
        "state": {i: {k: _whole(v) for k, v in values.items()} for i, values in state["state"].items()},
        "param_groups": state["param_groups"],
    }


def shard_optimizer_state(optimizer, state: dict) -> dict:
    """A whole optimizer state (as saved) with each tensor the shape of its parameter cut
    to this process's shard of that parameter, ready for ``optimizer.load_state_dict``."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    params = [p for g in optimizer.param_groups for p in g["params"]]
    out = {}
    for index, values in state["state"].items():
        p = params[int(index)]
        if not isinstance(p, DTensor):
            out[index] = values
            continue
        out[index] = {
            k: distribute_tensor(v.to(device=p.device, dtype=p.dtype), p.device_mesh, p.placements)
            if torch.is_tensor(v) and tuple(v.shape) == tuple(p.shape) else v
            for k, v in values.items()
        }
    return {"state": out, "param_groups": state["param_groups"]}


def broadcast_from_main(params: list[torch.Tensor]) -> None:
    """Overwrite ``params`` on every process with the main process's values (collective)."""
    import torch.distributed as dist

    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)
