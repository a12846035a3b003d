"""tasktune: teach a chat LLM one specific task, and prove that it learned it."""

__version__ = "0.1.0"
__all__ = ["__version__"]
