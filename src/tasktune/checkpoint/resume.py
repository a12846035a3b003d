"""Training checkpoints a run can resume from after a crash, written atomically.

``OUTPUT_DIR/checkpoint-STEP/`` holds:

* the adapter in its method's own format (``adapter_config.json`` +
  ``adapter_model.safetensors``: loadable by ``tasktune eval``/PEFT like the final one);
* ``trainable.safetensors``: every trainable tensor by parameter name, which is what a
  resumed run loads back; not written when the method's own file already holds exactly
  those tensors under those names (its ``SAVES_TRAINABLE``: freeze and full fine-tuning,
  where a second copy of the whole model would double the checkpoint), and then read
  from that file;
* ``optimizer.safetensors``: the optimizer's tensors (AdamW's moments and step counts);
* ``rng-RANK.safetensors`` / ``rng-RANK.json``: each process's torch, Python and NumPy
  random states;
* ``trainer_state.json``, written last: the loop's position (step, examples drawn from
  the stream, running totals, schedule length), the optimizer's hyperparameters and
  whatever the recipe adds (its evaluations so far).

Nothing is pickled: tensors go to safetensors and everything else to JSON. A checkpoint
is written into ``.checkpoint-STEP.partial/``, every file is flushed to disk, and the
folder is then renamed: a crash mid-write leaves only a ``.partial`` folder, never a
``checkpoint-STEP`` that looks complete.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tasktune.adapters import get_adapter
from tasktune.adapters.weights import WEIGHTS_NAME, tensor_copies
from tasktune.checkpoint.store import save_adapter
from tasktune.train import LoopState
from tasktune.train.shard import full_optimizer_state

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "STATE_NAME"]

STATE_NAME = "trainer_state.json"
TRAINABLE_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.safetensors"
FORMAT = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _unwrap(model):
    return getattr(model, "module", model)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_dir():
            _fsync_tree(path)
            continue
        with path.open("rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer ``state_dict`` as safetensors tensors plus a JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": plain}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(values) for i, values in rest["state"].items()}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def _save_rng(folder: Path, rank: int) -> None:
    from safetensors.torch import save_file

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(tensors, str(folder / f"rng-{rank}.safetensors"))
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    plain = {"python": [version, list(internal), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}
    (folder / f"rng-{rank}.json").write_text(json.dumps(plain), encoding="utf-8")


def _load_rng(folder: Path, rank: int) -> bool:
    from safetensors.torch import load_file

    tensors_path, plain_path = folder / f"rng-{rank}.safetensors", folder / f"rng-{rank}.json"
    if not (tensors_path.is_file() and plain_path.is_file()):
        return False
    tensors = load_file(str(tensors_path))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    plain = json.loads(plain_path.read_text(encoding="utf-8"))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return True


def save_checkpoint(
    out_dir: str | Path,
    model,
    method: str,
    state: LoopState,
    extra: dict,
    rank: int = 0,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Write ``OUTPUT_DIR/checkpoint-STEP/`` atomically; every process calls it.

    Args:
        out_dir: The run folder.
        model: The model in training (DDP-wrapped or not; sharded by FSDP, inside
            :func:`tasktune.train.shard.whole_weights`).
        method: The adapter method (its own save format is written too).
        state: The loop's state after ``state.step`` steps (its live optimizer included).
        extra: JSON-serialisable recipe state to hand back on resume.
        rank: This process's index; process 0 writes all but its peers' random states.
        barrier: Waits for every process (``accelerator.wait_for_everyone``).

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    final = out / f"checkpoint-{state.step}"
    partial = out / f".checkpoint-{state.step}.partial"
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    barrier()
    _save_rng(partial, rank)
    optimizer_state = full_optimizer_state(state.optimizer)  # sharded (FSDP) moments made whole
    barrier()
    if rank == 0:
        inner = _unwrap(model)
        save_adapter(inner, method, partial)
        trainable_file = WEIGHTS_NAME if get_adapter(method).SAVES_TRAINABLE else TRAINABLE_NAME
        if trainable_file == TRAINABLE_NAME:
            trainable = tensor_copies((n, p) for n, p in inner.named_parameters() if p.requires_grad)
            save_file(trainable, str(partial / TRAINABLE_NAME))
        opt_tensors, opt_rest = _split_optimizer(optimizer_state)
        save_file(opt_tensors, str(partial / OPTIMIZER_NAME))
        record = {"format": FORMAT, "method": method, "trainable_file": trainable_file, "loop": state.totals(),
                  "optimizer": opt_rest, "extra": extra}
        (partial / STATE_NAME).write_text(json.dumps(record, indent=1), encoding="utf-8")
        _fsync_tree(partial)
        if final.exists():  # a resumed run passing the same step again
            stale = out / f".checkpoint-{state.step}.stale"
            shutil.rmtree(stale, ignore_errors=True)
            final.rename(stale)
            shutil.rmtree(stale)
        partial.rename(final)
        _fsync_dir(out)
    barrier()
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``out_dir``; None if none."""
    found = []
    for path in Path(out_dir).glob("checkpoint-*"):
        m = _NAME.match(path.name)
        if m and (path / STATE_NAME).is_file():
            found.append((int(m[1]), path))
    return max(found)[1] if found else None


def load_checkpoint(folder: str | Path, model, rank: int = 0) -> tuple[LoopState, dict]:
    """Load a checkpoint into ``model`` (its adapter applied, not yet prepared) and
    restore this process's random states.

    Returns:
        The loop state to pass to ``train_steps`` (the optimizer state inside) and the
        recipe's ``extra``.

    Raises:
        ValueError: the checkpoint does not fit the model (another method or base).
    """
    from safetensors.torch import load_file

    d = Path(folder)
    record = json.loads((d / STATE_NAME).read_text(encoding="utf-8"))
    if record.get("format") != FORMAT:
        raise ValueError(f"{d / STATE_NAME}: checkpoint format {record.get('format')!r}, this tasktune reads {FORMAT}")
    inner = _unwrap(model)
    wanted = {n for n, p in inner.named_parameters() if p.requires_grad}
    tensors = load_file(str(d / record.get("trainable_file", TRAINABLE_NAME)))
    if set(tensors) != wanted:
        extra_names, missing = sorted(set(tensors) - wanted), sorted(wanted - set(tensors))
        raise ValueError(
            f"{d}: its trainable tensors do not fit this model ({len(missing)} missing, e.g. "
            f"{(missing or ['-'])[0]!r}; {len(extra_names)} unknown, e.g. {(extra_names or ['-'])[0]!r}); "
            "resume with the config the run was started with"
        )
    params = dict(inner.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    optimizer = _join_optimizer(load_file(str(d / OPTIMIZER_NAME)), record["optimizer"])
    if not _load_rng(d, rank):
        torch.manual_seed(record["loop"]["step"] * 1000 + rank)  # another process count: fresh, still seeded
    return LoopState.from_totals(dict(record["loop"]), optimizer), record["extra"]
