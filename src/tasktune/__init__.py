"""tasktune: teach a chat LLM one specific task, and prove that it learned it."""

import logging as _logging

# transformers imports torchao (our CPU int8 backend) whenever it is installed, and
# torchao then logs a warning for each CUDA-only kernel a CPU machine cannot load, and
# torch one per enum it registers: noise on every command, nothing for a user to act on.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

__version__ = "0.1.0"
__all__ = ["__version__"]
