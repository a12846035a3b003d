"""Recipes: one function per user command, wiring the stages top to bottom."""

from tasktune.recipes.chat import chat
from tasktune.recipes.common import refuse_remote_code
from tasktune.recipes.data import check_data, preview_data
from tasktune.recipes.evaluate import evaluate_runs
from tasktune.recipes.export import export_run
from tasktune.recipes.finetune import finetune
from tasktune.recipes.memory import MemorySettings, memory_table
from tasktune.recipes.predict import predict
from tasktune.recipes.serve import serve

__all__ = ["chat", "check_data", "preview_data", "evaluate_runs", "finetune", "predict", "serve", "export_run", "MemorySettings", "memory_table",
           "refuse_remote_code"]
