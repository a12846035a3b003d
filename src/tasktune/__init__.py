"""tasktune: teach a chat LLM one specific task, and prove that it learned it."""

import logging as _logging
import warnings as _warnings

# transformers imports torchao (our CPU int8 backend) whenever it is installed, and
# torchao then logs a warning for each CUDA-only kernel a CPU machine cannot load, and
# torch one per enum it registers: noise on every command, nothing for a user to act on.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

# Two library notes with nothing for a user to act on: PEFT asks transformers for a
# renamed property on every training step, and PEFT saving an adapter of a model loaded
# from a GGUF file finds no config.json beside it (the vocabulary is unchanged either way).
_warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)
_warnings.filterwarnings("ignore", message=r"Could not find a config file in .* will assume that the vocabulary was not modified")

__version__ = "0.1.0"
__all__ = ["__version__"]
