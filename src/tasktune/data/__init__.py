"""Stage 1, data: task generators and file sources -> :class:`Example` lists."""

from tasktune.data.example import Example
from tasktune.data.files import DataFileError, load_file
from tasktune.data.sources import Datasets, build_datasets

__all__ = ["Example", "DataFileError", "load_file", "Datasets", "build_datasets"]
