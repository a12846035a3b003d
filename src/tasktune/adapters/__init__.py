"""Stage 4, adapters: one module per method, each with ``apply``, ``save`` and ``load``.

The registry below is the one place that knows the method names.
"""

from types import ModuleType

from tasktune.adapters import freeze, full, lora, prefix

__all__ = ["ADAPTERS", "get_adapter"]

ADAPTERS: dict[str, ModuleType] = {"lora": lora, "prefix": prefix, "freeze": freeze, "full": full}


def get_adapter(method: str) -> ModuleType:
    """The module implementing ``method``.

    Raises:
        ValueError: unknown method (lists the known ones).
    """
    if method not in ADAPTERS:
        raise ValueError(f"adapter.method: unknown method {method!r}; available: {', '.join(ADAPTERS)}")
    return ADAPTERS[method]
