"""The `tasktune` command line."""

from tasktune.cli.main import main

__all__ = ["main"]
