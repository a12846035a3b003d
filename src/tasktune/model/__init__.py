"""Stage 3, model: find and load base weights and tokenizer; dtype, quantization."""

from tasktune.model.load import (
    ModelSource,
    load_model,
    load_tokenizer,
    pick_dtype,
    pretrained_args,
    rebuilt_without_gguf,
    resolve_model,
)
from tasktune.model.quantize import check_quantization

__all__ = ["ModelSource", "resolve_model", "pick_dtype", "load_tokenizer", "load_model", "rebuilt_without_gguf", "pretrained_args",
           "check_quantization"]
