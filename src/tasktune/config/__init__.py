"""Run configuration: frozen dataclasses, one module per stage, loaded from YAML.

Each stage's settings sit in the module named after it (``config/train.py`` holds
``TrainConfig``, with the checks of its values in its ``problems``); ``config/load.py``
is the one loader. Every name is importable from ``tasktune.config``.

Every field's docstring is its help text (``tasktune train --help-config``).
:func:`load_config` rejects unknown keys with a did-you-mean and reports every
problem of a file at once in one :class:`ConfigError`.

Example:
    >>> cfg = load_config("configs/arith_lora.yaml", ["train.max_steps=10"])
    >>> cfg.train.max_steps
    10
"""

from tasktune.config.adapters import FREEZE_EXTRA, AdapterConfig, FreezeConfig, LoraConfig, PrefixConfig
from tasktune.config.data import ArithmeticConfig, ContextConfig, DataConfig, FileDataConfig
from tasktune.config.encoding import EncodingConfig
from tasktune.config.generate import SUITES, EvalConfig, GenerateConfig
from tasktune.config.load import ConfigError, config_to_dict, field_docs, load_config
from tasktune.config.rl import RLConfig
from tasktune.config.run import RunConfig
from tasktune.config.train import TrainConfig

__all__ = [
    "ArithmeticConfig",
    "FileDataConfig",
    "ContextConfig",
    "DataConfig",
    "EncodingConfig",
    "LoraConfig",
    "AdapterConfig",
    "FreezeConfig",
    "FREEZE_EXTRA",
    "PrefixConfig",
    "TrainConfig",
    "RLConfig",
    "EvalConfig",
    "GenerateConfig",
    "SUITES",
    "RunConfig",
    "ConfigError",
    "load_config",
    "config_to_dict",
    "field_docs",
]
