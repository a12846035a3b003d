"""A merged model as a GGUF file: what llama.cpp (and Ollama, LM Studio, llama-server) load.

Written with the ``gguf`` package (ggml's own reader and writer). The file holds the
weights under llama.cpp's tensor names, the model's hyperparameters, the BPE tokenizer
(tokens, types, merges, its pre-tokenizer name), the chat template the run rendered with,
the end-of-turn token as EOS, greedy generation defaults and the run's resolved config
(``tasktune.config``), so that ``tasktune eval --gguf FILE`` finds the held-out set.

Kinds: ``f32``, ``f16``, ``q8_0`` and ``q4_0``/``q4_1``/``q5_0`` are quantized here by the
``gguf`` package's quantizers (1-D tensors stay float32, as llama.cpp's converter keeps
them); the K-quants (``q4_k_m``, ``q5_k_m``, ``q6_k``) have no quantizer in that package
and go through llama.cpp's own (``llama_model_quantize``) from a float32 file, where the
``llama-cpp-python`` binding is installed.

Llama's q/k projections are permuted: Hugging Face rotates the two halves of each head
(``rotate_half``), llama.cpp's ``llama`` graph rotates interleaved pairs; without the
permutation the file loads and answers garbage. Qwen2 uses the half rotation in llama.cpp
too (NEOX), so its weights go as they are.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import numpy as np
import torch

__all__ = ["GGUF_KINDS", "ARCHITECTURES", "GgufMeta", "gguf_tensors", "write_gguf", "check_kind", "check_architecture",
           "llama_cpp_binding", "llama_cpp_available", "LLAMA_CPP_MISSING", "cores"]

LLAMA_CPP_MISSING = ("the llama-cpp-python binding is not installed; install it with: pip install 'tasktune[gguf]' "
                     "(pip builds it from source once: about 7 minutes on 2 cores, then cached)")

ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}
"""Hugging Face ``model_type`` -> llama.cpp architecture written."""

_PERMUTED = {"llama"}  # architectures whose q/k weights llama.cpp expects interleaved

GGUF_KINDS: dict[str, tuple[str, int]] = {
    # kind -> (how it is made, llama.cpp's file type number: LLAMA_FTYPE_*)
    "f32": ("gguf", 0),
    "f16": ("gguf", 1),
    "q8_0": ("gguf", 7),
    "q4_0": ("gguf", 2),
    "q4_1": ("gguf", 3),
    "q5_0": ("gguf", 8),
    "q4_k_m": ("llama.cpp", 15),
    "q5_k_m": ("llama.cpp", 17),
    "q6_k": ("llama.cpp", 18),
}

# The BPE pre-tokenizers llama.cpp knows, by the hash llama.cpp's converter takes of the
# tokenizer's ids for this text (convert_hf_to_gguf.py, get_vocab_base_pre).
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 "
    "333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= "
    "нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL"
)
_PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


@dataclass(frozen=True)
class GgufMeta:
    """What the file carries beside the weights."""

    name: str
    """general.name: the run's folder name."""
    chat_template: str | None
    """The template the run rendered with (None: the tokenizer's own)."""
    stop_id: int
    """The run's end-of-turn token, written as the EOS token (llama.cpp stops on it)."""
    run_config: str = ""
    """The run's config.yaml, as ``tasktune.config``."""
    pre_tokenizer: str | None = None
    """llama.cpp's pre-tokenizer name when known from the source (a GGUF base's own);
    None: recognised from the tokenizer's ids, as llama.cpp's converter does."""


def check_kind(kind: str) -> None:
    """Raises:
        ValueError: ``kind`` is not a GGUF kind tasktune writes (lists them), or a K-quant
            where the llama.cpp binding that makes it is not installed (says how to get it)."""
    if kind not in GGUF_KINDS:
        raise ValueError(f"--quant {kind!r}: not a GGUF kind tasktune writes; choose from {', '.join(GGUF_KINDS)}")
    if GGUF_KINDS[kind][0] == "llama.cpp":
        _need_llama_cpp(kind)


def check_architecture(model_type: str) -> str:
    """llama.cpp's architecture name for a Hugging Face ``model_type``.

    Raises:
        ValueError: an architecture the GGUF export does not write (names the supported ones).
    """
    if model_type not in ARCHITECTURES:
        raise ValueError(f"GGUF export supports the {' and '.join(ARCHITECTURES)} architectures; this model is "
                         f"{model_type!r}: export it as a Hugging Face folder (--format hf) instead")
    return ARCHITECTURES[model_type]


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Each head's rows from [first halves, second halves] to interleaved pairs:
    (heads * 2 * D/2, in) -> (heads, D/2, 2, in) order, llama.cpp's rotary layout."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as float32 arrays under llama.cpp's names, q/k permuted where
    llama.cpp expects it; a tied output projection is left out (llama.cpp reuses the
    token embedding).

    Raises:
        ValueError: an unsupported architecture, or a tensor llama.cpp has no name for.
    """
    import gguf

    config = model.config
    arch = check_architecture(config.model_type)
    names = gguf.get_tensor_name_map(_arch_enum(arch), config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    out: dict[str, np.ndarray] = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
            continue
        if "rotary_emb" in hf_name:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"{hf_name}: llama.cpp's {arch} graph has no tensor of this name; the GGUF export "
                             "cannot carry it")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if arch in _PERMUTED and hf_name.endswith("q_proj.weight"):
            array = _permute(array, heads)
        elif arch in _PERMUTED and hf_name.endswith("k_proj.weight"):
            array = _permute(array, kv_heads)
        out[name] = np.ascontiguousarray(array)
    return out


def _arch_enum(arch: str):
    import gguf

    return next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)


def _tensor_type(array: np.ndarray, kind: str):
    """The GGML type a tensor is stored in: 1-D tensors (norms, biases) in float32, as
    llama.cpp's converter keeps them; a matrix whose rows do not split into the kind's
    32-value blocks in float16."""
    import gguf

    T = gguf.GGMLQuantizationType
    if kind == "f32" or array.ndim == 1:
        return T.F32
    if kind == "f16":
        return T.F16
    qtype = T[kind.upper()]
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    return qtype if array.shape[-1] % block == 0 else T.F16


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type", "default") not in ("default", None):
        raise ValueError(f"rope scaling {params['rope_type']!r}: the GGUF export writes plain rotary embeddings only; "
                         "export this model as a Hugging Face folder (--format hf)")
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _pre_tokenizer(tokenizer) -> str:
    digest = sha256(str(tokenizer.encode(_CHECK_TEXT, add_special_tokens=False)).encode()).hexdigest()
    if digest not in _PRE_TOKENIZERS:
        raise ValueError("the tokenizer's pre-tokenizer is not one tasktune knows llama.cpp's name for "
                         f"({', '.join(_PRE_TOKENIZERS.values())}); export as a Hugging Face folder (--format hf) "
                         "and convert with llama.cpp's convert_hf_to_gguf.py")
    return _PRE_TOKENIZERS[digest]


def _write_tokenizer(writer, tokenizer, meta: GgufMeta, vocab_size: int) -> None:
    """A byte-level BPE tokenizer as llama.cpp's ``gpt2`` model: every id's token string,
    its type (control for special added tokens), the merges, the special ids."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE":
        raise ValueError(f"tokenizer model {backend['model']['type']!r}: the GGUF export writes byte-level BPE "
                         "tokenizers only; export as a Hugging Face folder (--format hf)")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(meta.pre_tokenizer or _pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(meta.stop_id)
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else meta.stop_id)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    writer.add_add_eos_token(False)
    template = meta.chat_template if meta.chat_template is not None else tokenizer.chat_template
    if template:
        writer.add_chat_template(template)


def _write_hyperparameters(writer, config, kind: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(GGUF_KINDS[kind][1])


def write_gguf(model: torch.nn.Module, tokenizer, meta: GgufMeta, path: str | Path, kind: str,
               tensors: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``model`` (merged, unquantized) as one GGUF file of ``kind``.

    Args:
        model: A Hugging Face causal LM of a supported architecture.
        tokenizer: Its (fast, byte-level BPE) tokenizer.
        meta: Template, stop token, name and the run's config.
        path: The file to write.
        kind: One of :data:`GGUF_KINDS`.
        tensors: :func:`gguf_tensors` of ``model``, when the caller has them already.

    Raises:
        ValueError: unknown kind, unsupported architecture, rope scaling or tokenizer;
            a K-quant without the llama-cpp-python binding (says how to install it).
    """
    check_kind(kind)
    path = Path(path)
    if GGUF_KINDS[kind][0] == "llama.cpp":
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            source = write_gguf(model, tokenizer, meta, Path(tmp) / "f32.gguf", "f32", tensors)
            _llama_quantize(source, path, GGUF_KINDS[kind][1])
        return path
    import gguf

    arch = check_architecture(model.config.model_type)
    tensors = tensors if tensors is not None else gguf_tensors(model)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(meta.name)
    writer.add_type("model")
    _write_hyperparameters(writer, model.config, kind)
    _write_tokenizer(writer, tokenizer, meta, model.config.vocab_size)
    # Greedy, as the run was evaluated: llama.cpp's front ends take these as defaults.
    writer.add_float32(gguf.Keys.General.SAMPLING_TEMP, 0.0)
    writer.add_int32(gguf.Keys.General.SAMPLING_TOP_K, 1)
    if meta.run_config:
        writer.add_string("tasktune.config", meta.run_config)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, array in tensors.items():
        qtype = _tensor_type(array, kind)
        data = array if qtype == gguf.GGMLQuantizationType.F32 else gguf.quants.quantize(array, qtype)
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def cores() -> int:
    """The CPU cores this process may use (all of them where the OS cannot say: macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def llama_cpp_available() -> bool:
    """Whether the llama-cpp-python binding is installed (not imported: that loads the library)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


_LOG = {"callback": None}
"""The log callback handed to llama.cpp (kept alive here: llama.cpp holds its pointer)."""


def llama_cpp_binding():
    """The binding, with llama.cpp's log cut to its errors (a load logs hundreds of lines).

    Raises:
        ValueError: the binding is not installed (says how to install it).
    """
    try:
        import llama_cpp
    except ImportError:
        raise ValueError(LLAMA_CPP_MISSING) from None
    if _LOG["callback"] is None:
        @llama_cpp.llama_log_callback
        def errors_only(level: int, text: bytes, user_data) -> None:
            if level == 4:  # GGML_LOG_LEVEL_ERROR (ggml: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)
                print(text.decode("utf-8", errors="replace"), end="", file=sys.stderr)

        _LOG["callback"] = errors_only
        llama_cpp.llama_log_set(errors_only, ctypes.c_void_p(0))
    return llama_cpp


def _need_llama_cpp(kind: str) -> None:
    if not llama_cpp_available():
        raise ValueError(f"--quant {kind}: K-quants are made by llama.cpp's own quantizer, and the llama-cpp-python "
                         "binding is not installed; install it with: pip install 'tasktune[gguf]' (pip builds it from "
                         "source once, about 7 minutes on 2 cores), or choose f32, f16, q8_0, q4_0 or q5_0")


def _llama_quantize(source: Path, out: Path, ftype: int) -> None:
    """llama.cpp's quantizer, its per-tensor notes (written straight to the process's output,
    one a tensor that falls back on another type: 180 lines for SmolLM2) kept out of the
    terminal; :func:`type_counts` of the file says what each tensor became."""
    llama_cpp = llama_cpp_binding()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = cores()
    with tempfile.TemporaryFile(mode="w+b") as log:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
        log.seek(0)
        notes = log.read().decode("utf-8", errors="replace")
    if status != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} to {out}:\n{notes[-2000:]}")
