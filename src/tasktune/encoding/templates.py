"""Built-in chat templates for models whose tokenizer ships none.

Each is a Jinja template in the format of ``tokenizer.chat_template`` and is passed to
``apply_chat_template(chat_template=...)``; the tokenizer itself is never modified.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["TEMPLATES", "get_template", "go_template"]

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


def go_template(render: Callable[[list[dict[str, str]], bool], str]) -> str | None:
    """The chat template as a Go template for an Ollama ``Modelfile``, derived from how
    ``render(messages, add_generation_prompt)`` lays out marked messages: the text before
    and after a system, user and assistant turn. None when the pieces do not rebuild the
    template's own rendering of a three-turn conversation with a system turn (Ollama then
    falls back on the template in the GGUF file). Actions carry no ``{{-`` trim marks: the
    pieces' own newlines are part of the format.
    """
    s, u1, a1, u2 = "\x01S\x01", "\x01U1\x01", "\x01A1\x01", "\x01U2\x01"
    first = render([{"role": "user", "content": u1}], True)
    answered = render([{"role": "user", "content": u1}, {"role": "assistant", "content": a1}], False)
    turns = [{"role": "user", "content": u1}, {"role": "assistant", "content": a1}, {"role": "user", "content": u2}]
    multi = render(turns, True)
    system = render([{"role": "system", "content": s}] + turns, True)
    try:
        opening, after_user = first.split(u1)
        asst_end = answered.split(a1)[1]
        user_start = multi.split(a1)[1].split(u2)[0].removeprefix(asst_end)
        default = opening.removesuffix(user_start)
        sys_start, rest = system.split(s)
        sys_end = rest.split(u1)[0].removesuffix(user_start)
    except ValueError:  # a marker missing or repeated: the template rewrites its messages
        return None
    rebuilt = (sys_start + s + sys_end + user_start + u1 + after_user + a1 + asst_end + user_start + u2 + after_user)
    plain = default + user_start + u1 + after_user + a1 + asst_end + user_start + u2 + after_user
    pieces = (sys_start, sys_end, default, user_start, after_user, asst_end)
    if rebuilt != system or plain != multi or any("{{" in p for p in pieces):
        return None
    return (
        f"{{{{ if .System }}}}{sys_start}{{{{ .System }}}}{sys_end}{{{{ else }}}}{default}{{{{ end }}}}"
        f"{{{{ range .Messages }}}}{{{{ if eq .Role \"user\" }}}}{user_start}{{{{ .Content }}}}{after_user}"
        f"{{{{ else if eq .Role \"assistant\" }}}}{{{{ .Content }}}}{asst_end}{{{{ end }}}}{{{{ end }}}}"
    )
