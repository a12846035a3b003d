"""Stage 7, generate: batched left-padded decoding (greedy unless sampling is asked for), and streaming for chat;
greedy answers from a GGUF file through llama.cpp."""

from tasktune.generate.batched import Completion, generate_batch, generate_completions, stream_generate
from tasktune.generate.llamacpp import LLAMA_CPP_MISSING, GgufModel, llama_cpp_available

__all__ = ["Completion", "generate_completions", "generate_batch", "stream_generate", "GgufModel", "llama_cpp_available",
           "LLAMA_CPP_MISSING"]
