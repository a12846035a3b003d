"""Recipes: one function per user command, wiring the stages top to bottom."""

from tasktune.recipes.chat import chat
from tasktune.recipes.common import refuse_remote_code
from tasktune.recipes.data import check_data, preview_data
from tasktune.recipes.evaluate import evaluate_gguf, evaluate_runs
from tasktune.recipes.export import export_run
from tasktune.recipes.gguf_export import export_gguf
from tasktune.recipes.finetune import finetune
from tasktune.recipes.memory import MemorySettings, gguf_table, memory_table
from tasktune.recipes.predict import predict
from tasktune.recipes.serve import serve

__all__ = ["chat", "check_data", "preview_data", "evaluate_runs", "evaluate_gguf", "finetune", "predict", "serve", "export_run",
           "export_gguf", "MemorySettings", "memory_table", "gguf_table", "refuse_remote_code"]
