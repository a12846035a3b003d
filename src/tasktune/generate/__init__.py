"""Stage 7, generate: batched left-padded decoding (greedy unless sampling is asked for), and streaming for chat."""

from tasktune.generate.batched import Completion, generate_batch, generate_completions, stream_generate

__all__ = ["Completion", "generate_completions", "generate_batch", "stream_generate"]
