"""Built-in chat templates for models whose tokenizer ships none.

Each is a Jinja template in the format of ``tokenizer.chat_template`` and is passed to
``apply_chat_template(chat_template=...)``; the tokenizer itself is never modified.
"""

from __future__ import annotations

__all__ = ["TEMPLATES", "get_template"]

# Legacy ChatGLM-6B: "[Round n]\n问：...\n答：". The user turn ends with "答：", so the
# generation prompt is implicit; the final answer is closed by the EOS token, which is
# what the model learns to stop on (earlier rounds are joined by "\n" as ChatGLM did).
# Newlines next to a "{%-"/"-%}" tag are trimmed by Jinja, so they are written as
# expressions ({{ '\n' }}), which whitespace control leaves alone.
CHATGLM = (
    "{%- set ns = namespace(round=0) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if message['content'] -%}{{ message['content'] + '\n' }}{%- endif -%}"
    "{%- elif message['role'] == 'user' -%}"
    "[Round {{ ns.round }}]\n问：{{ message['content'] }}\n答："
    "{%- else -%}"
    "{{ message['content'] }}{%- if loop.last -%}{{ eos_token }}{%- else -%}{{ '\n' }}{%- endif -%}"
    "{%- set ns.round = ns.round + 1 -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# ChatML without an injected default system prompt (Qwen, SmolLM and others use it).
CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)

# No role markers: the prompt and a newline, then the answer and the EOS token. For base
# (non-chat) models without a template, with prompts that say where the answer goes
# (`98+83=`). The newline keeps the prompt's tokens a prefix of the whole (`=-` is one
# SmolLM2 token, `=\n-` three). Shorter than ChatML (14 tokens for a 3-digit problem
# against 22), but the chat-tuned SmolLM2 learned far slower with it (BENCHMARKS.md).
PLAIN = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if message['content'] -%}{{ message['content'] + '\n' }}{%- endif -%}"
    "{%- elif message['role'] == 'user' -%}{{ message['content'] + '\n' }}"
    "{%- else -%}{{ message['content'] + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

TEMPLATES: dict[str, str] = {"chatglm": CHATGLM, "chatml": CHATML, "plain": PLAIN}


def get_template(name: str) -> str:
    """Jinja source of a built-in template.

    Raises:
        ValueError: unknown name (lists the known ones).
    """
    if name not in TEMPLATES:
        raise ValueError(f"encoding.template: unknown template {name!r}; built-in: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]
