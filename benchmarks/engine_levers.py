"""The training-engine levers of issue #18 that are not in the engine, measured.

Each lever is timed against the plain path on the same work, in alternating rounds
(order flipped every round), and reported as the ratio of medians (above 1: the lever is
faster). Nothing here changes tasktune; a lever that wins moves into the engine with a
test that it computes what the plain path computes.

Levers:
  fused     q, k and v as one product, gate and up as one, and the LoRA A matrices that
            share an input as one (each forward and the activation backward), against
            the separate products PEFT runs; synthetic tensors at SmolLM2's shapes
            (576 wide, k/v 192, MLP 1536, LoRA rank 32) for ``--rows`` token rows.
  addmm     PEFT's LoRA forward ``base(x) + B(A(x)) * scale`` (two elementwise passes
            over each layer's output, and one more in the backward) against the LoRA
            product added into the base output in place (``addmm_``), on the bundled
            model, micro-batches of the demo's rows; checks the loss and gradients agree.
  compile   ``torch.compile(model, dynamic=True)`` on the bundled model with LoRA: the
            first micro-batch's time (compiling), then compiled against eager.
  steps     one optimizer step after another on the bundled model with LoRA (the demo's
            rows, batches of 8): seconds, page faults and system time per step, the
            median of the first 5 steps against the rest; ``--same`` repeats one batch,
            so that new shapes cannot be the cause. Run it under different ``MALLOC_*``
            environment settings to compare allocators' behaviour.

Usage:
    python benchmarks/engine_levers.py fused [--rows 384]
    python benchmarks/engine_levers.py addmm
    python benchmarks/engine_levers.py compile
    python benchmarks/engine_levers.py steps [--same]
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from itertools import islice

import torch

CONFIG = "configs/arith_lora.yaml"


def _alternate(variants: dict, run, rounds: int) -> dict[str, float]:
    """Median seconds of ``run(variant)`` per variant, over ``rounds`` alternating rounds
    (the first round is a warm-up and not counted)."""
    times = {k: [] for k in variants}
    for r in range(rounds + 1):
        for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            started = time.perf_counter()
            run(variants[name])
            if r:
                times[name].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def _report(medians: dict[str, float], plain: str) -> None:
    for name, seconds in medians.items():
        print(f"{name}: {seconds * 1e3:.1f} ms, {medians[plain] / seconds:.3f}x the {plain} path")


def lever_fused(rows: int, rounds: int) -> None:
    torch.manual_seed(0)
    width, rank, attn, mlp = 576, 32, [576, 192, 192], [1536, 1536]
    weights = {o: [torch.randn(n, width) * 0.02 for n in o] for o in (tuple(attn), tuple(mlp))}
    lora = {o: ([(torch.randn(rank, width) * 0.02).requires_grad_() for _ in o],
                [(torch.randn(n, rank) * 0.02).requires_grad_() for n in o]) for o in weights}
    fused_w = {o: torch.cat(w) for o, w in weights.items()}

    def separate(x):
        total = 0
        for o, ws in weights.items():
            for w, a, b in zip(ws, *lora[o]):
                total = total + (x @ w.t() + (x @ a.t()) @ b.t() * 2).sum()
        return total

    def fused(x):
        total = 0
        for o, w in fused_w.items():
            a_list, b_list = lora[o]
            base, down = x @ w.t(), x @ torch.cat(a_list).t()  # one product each for the group
            for j, (part, b) in enumerate(zip(base.split(list(o), -1), b_list)):
                total = total + (part + down[:, j * rank : (j + 1) * rank] @ b.t() * 2).sum()
        return total

    def run(f):
        for _ in range(5):
            f(torch.randn(rows, width, requires_grad=True)).backward()

    _report(_alternate({"separate": separate, "fused": fused}, run, rounds), "separate")


def _demo(n_rows: int):
    from tasktune.config import load_config
    from tasktune.data import build_datasets
    from tasktune.recipes.common import load_base

    cfg = load_config(CONFIG)
    data = build_datasets(cfg.data, 10, cfg.eval.seed, cfg.seed)
    loaded = load_base(cfg)
    rows = [loaded.encoder.encode(e, cfg.encoding.max_length) for e in islice(data.train, n_rows)]
    return cfg, loaded, rows


def _batches(rows, size: int, same: bool = False) -> list[dict]:
    from tasktune.encoding import pad_right

    starts = [0] * (len(rows) // size) if same else range(0, len(rows) - size + 1, size)
    return [pad_right([r.input_ids for r in rows[i : i + size]], [r.labels for r in rows[i : i + size]], 0) for i in starts]


def _lora_model(base, cfg, layer_cls=None):
    """The config's LoRA on a copy of ``base``, B drawn at random (not zero) so that the
    adapter's products count; ``layer_cls`` replaces PEFT's LoRA linear layer."""
    import peft

    lora = cfg.adapter.lora
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    if layer_cls is not None:
        config._register_custom_module({torch.nn.Linear: layer_cls})
    torch.manual_seed(0)
    model = peft.get_peft_model(copy.deepcopy(base), config)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)
    return model


def _grads_agree(a, b, batch) -> str:
    from tasktune.train.loss import supervised_loss_sum

    out = []
    for m in (a, b):
        m.zero_grad()
        loss = supervised_loss_sum(m, batch)
        loss.backward()
        out.append((float(loss), {n.replace("_orig_mod.", ""): p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}))
    diff = max(float((out[0][1][n] - out[1][1][n]).abs().max()) for n in out[0][1])
    return f"loss {out[0][0]:.4f} against {out[1][0]:.4f}, largest gradient difference {diff:.2e}"


def lever_addmm(rounds: int) -> None:
    from peft.tuners.lora.layer import Linear as PeftLinear

    from tasktune.train.loss import supervised_loss_sum

    class AddmmLinear(PeftLinear):
        """PEFT's LoRA linear layer, its update added into the base output in place."""

        def forward(self, x, *args, **kwargs):
            name = self.active_adapters[0]
            plain = (self.disable_adapters or self.merged or args or kwargs or len(self.active_adapters) != 1
                     or not isinstance(self.lora_dropout[name], torch.nn.Identity))
            if plain:
                return super().forward(x, *args, **kwargs)
            out = self.base_layer(x)
            down = self.lora_A[name](x)
            out.view(-1, out.shape[-1]).addmm_(down.view(-1, down.shape[-1]), self.lora_B[name].weight.t(),
                                                alpha=self.scaling[name])
            return out

    cfg, loaded, rows = _demo(64)
    batches = _batches(rows, 8)
    models = {"peft": _lora_model(loaded.model, cfg), "addmm": _lora_model(loaded.model, cfg, AddmmLinear)}
    print(_grads_agree(models["peft"], models["addmm"], batches[0]))

    def run(model):
        for b in batches[:4]:
            supervised_loss_sum(model, b).backward()

    _report(_alternate(models, run, rounds), "peft")


def lever_compile(rounds: int) -> None:
    from tasktune.train.loss import supervised_loss_sum

    cfg, loaded, rows = _demo(64)
    batches = _batches(rows, 8)
    eager = _lora_model(loaded.model, cfg)
    compiled = torch.compile(_lora_model(loaded.model, cfg), dynamic=True)
    for i, b in enumerate(batches[:4]):
        started = time.perf_counter()
        supervised_loss_sum(compiled, b).backward()
        print(f"compiled micro-batch {i + 1} (width {b['input_ids'].shape[1]}): {time.perf_counter() - started:.1f} s", flush=True)
    print(_grads_agree(eager, compiled, batches[0]))

    def run(model):
        for b in batches[:4]:
            supervised_loss_sum(model, b).backward()

    _report(_alternate({"eager": eager, "compiled": compiled}, run, rounds), "eager")


def lever_steps(same: bool) -> None:
    from tasktune.adapters import get_adapter
    from tasktune.train.loss import supervised_loss_sum

    cfg, loaded, rows = _demo(160)
    model = get_adapter("lora").apply(loaded.model, cfg.adapter)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    seconds, faults, system = [], [], []
    for batch in _batches(rows, 8, same):
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        supervised_loss_sum(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        after = resource.getrusage(resource.RUSAGE_SELF)
        seconds.append(time.perf_counter() - started)
        faults.append(after.ru_minflt - before.ru_minflt)
        system.append(after.ru_stime - before.ru_stime)
    print("seconds", " ".join(f"{s:.2f}" for s in seconds))
    print("page faults", " ".join(map(str, faults)))
    print("system seconds", " ".join(f"{s:.2f}" for s in system))
    print(f"median of the first 5 steps {statistics.median(seconds[:5]):.2f} s, of the rest {statistics.median(seconds[5:]):.2f} s; "
          f"the first step {seconds[0]:.2f} s with {faults[0]} page faults and {system[0]:.2f} s of system time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lever", choices=["fused", "addmm", "compile", "steps"])
    parser.add_argument("--rows", type=int, default=384, help="token rows of the fused products")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds after a warm-up round")
    parser.add_argument("--same", action="store_true", help="steps: one batch repeated")
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.lever == "fused":
        lever_fused(args.rows, args.rounds)
    elif args.lever == "addmm":
        lever_addmm(args.rounds)
    elif args.lever == "compile":
        lever_compile(args.rounds)
    else:
        lever_steps(args.same)
    return 0


if __name__ == "__main__":
    sys.exit(main())
