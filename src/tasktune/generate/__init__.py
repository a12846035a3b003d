"""Stage 7, generate: batched left-padded greedy decoding, and streaming for chat."""

from tasktune.generate.batched import generate_batch, stream_generate

__all__ = ["generate_batch", "stream_generate"]
