"""The whole run's settings: :class:`RunConfig`, one section per stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasktune.config.adapters import AdapterConfig
from tasktune.config.data import DataConfig
from tasktune.config.encoding import EncodingConfig
from tasktune.config.generate import EvalConfig, GenerateConfig
from tasktune.config.rl import RLConfig
from tasktune.config.train import TrainConfig
from tasktune.constants import DEFAULT_MODEL

__all__ = ["RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    output_dir: str = "runs/run"
    """Run folder: config, adapter, metrics, predictions and report."""
    model: str = DEFAULT_MODEL
    """Bundled name (smollm2-135m), a local Hugging Face folder, a .gguf file, or a cached hub id."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype; auto: float32 on CPU, bfloat16 (or float16) on a GPU."""
    quantization: Literal["none", "int8", "int4"] = "none"
    """Quantize the base's block linear layers. CUDA: bitsandbytes int8 or NF4 (double
    quantization), for inference and for lora/prefix training on top (QLoRA). CPU: int8
    weight-only (torchao) for eval, predict and chat; int4 and training need CUDA."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model (off unless you trust the source). A run
    folder that sets it is used by eval, predict, chat, serve and export only with
    --trust-remote-code on their command line."""
    seed: int = 0
    """Seed of weights init, data order and training problems."""
    data: DataConfig = field(default_factory=DataConfig)
    """Stage 1: where examples come from (a generated task or a file) and the held-out split."""
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    """Stage 2: the chat template, system prompt and length limits of a row."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """Stage 4: the fine-tuning method and its settings."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Stage 5: the training loop (steps, batch, schedule, precision, checkpoints)."""
    rl: RLConfig = field(default_factory=RLConfig)
    """Stage 5, reinforcement from the verifier: sampling, rewards and loss of train.objective grpo / rft."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Stage 8: held-out evaluation before, during and after training."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    """Stage 7: decoding of answers (greedy unless sampling is asked for) and its cap."""

    def problems(self) -> list[str]:
        """Every section's own problems, then what only two sections together can say."""
        p: list[str] = []
        for section in (self.data, self.encoding, self.adapter, self.train, self.eval, self.generate):
            p += section.problems()
        if self.train.objective != "sft":
            p += self.rl.problems()
            if self.rl.beta > 0 and not self.train.init_from:
                p.append("rl.beta: the KL term is to the starting run's adapter; set train.init_from (or rl.beta=0)")
            if self.train.objective == "grpo" and self.rl.num_generations < 2 and not self.rl.step_credit:
                p.append("rl.num_generations: grpo compares each answer with the others of its group; with 1 every "
                         "advantage is 0 and nothing is learned: use 2 or more (or train.objective=rft)")
            if self.train.batch_size % self.rl.num_generations:
                p.append(f"train.batch_size ({self.train.batch_size}) counts completions: it must be a multiple of "
                         f"rl.num_generations ({self.rl.num_generations})")
        stop_at = self.train.stop_at
        if stop_at is not None and self.eval.metric == "exact_match" and not 0.0 < stop_at <= 1.0:
            p.append(f"train.stop_at: an exact match within (0, 1], e.g. 0.99, got {stop_at}")
        if stop_at is not None and self.eval.every < 1:
            p.append("train.stop_at: needs evaluations during training; set eval.every (steps), e.g. eval.every=50")
        return p
