"""What a written GGUF file holds: its tensors de-quantized, the types they are stored in,
and what its quantization did to the tuning change."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["read_tensors", "tuning_kept", "type_counts", "dominant_type"]


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """A GGUF file's tensors, de-quantized to float32, in the writer's shapes (out, in)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = np.asarray(values, dtype=np.float32).reshape([int(d) for d in reversed(t.shape.tolist())])
    return out


def tuning_kept(base: dict[str, np.ndarray], tuned: dict[str, np.ndarray],
                written: dict[str, np.ndarray]) -> tuple[float, float]:
    """What a quantized file does to the tuning change (tuned - base), over every changed tensor.

    Returns:
        The share of the change the file keeps (what it holds minus the base, projected on
        the change: 1.0 all of it; a grid that snaps weights back to the base's keeps
        little), and how far its rounding moves the tuned weights, in sizes of the change
        (||written - tuned|| / ||tuned - base||: above 1 the rounding outweighs the tuning).
    """
    dot = norm = moved = 0.0
    for name, after in tuned.items():
        change = after - base[name]
        if name not in written or not change.any():
            continue
        dot += float(np.vdot(written[name] - base[name], change))
        norm += float(np.vdot(change, change))
        moved += float(np.vdot(written[name] - after, written[name] - after))
    return (dot / norm, (moved / norm) ** 0.5) if norm else (1.0, 0.0)


def type_counts(path: str | Path) -> dict[str, int]:
    """How many of a GGUF file's matrices are stored in each GGML type (``{"Q5_0": 150, ...}``)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return dict(Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1).most_common())


def dominant_type(path: str | Path) -> str:
    """The GGML type most of a GGUF file's matrices are stored in (``Q4_1``, ``F16``, ...)."""
    counts = type_counts(path)
    return next(iter(counts)) if counts else "F32"
