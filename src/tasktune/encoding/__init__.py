"""Stage 2, encoding: chat template, labels, padding or packing."""

from tasktune.encoding.chat import ChatEncoder, Encoded
from tasktune.encoding.collate import pack, pad_id_for, pad_left, pad_right
from tasktune.encoding.templates import TEMPLATES, get_template

__all__ = ["ChatEncoder", "Encoded", "pack", "pad_id_for", "pad_left", "pad_right", "TEMPLATES", "get_template"]
