"""Served.prompt_ids: a conversation a client sends back reads as the model wrote it."""

from __future__ import annotations

from functools import partial

from tasktune.config import load_config
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder
from tasktune.recipes.common import as_learned, presented
from tasktune.serve.engine import Served


def test_earlier_answers_a_client_sends_back_are_rendered_in_the_learned_form(tokenizer):
    cfg = load_config(None, ["data.arithmetic.answer_format=reversed"])
    encoder = ChatEncoder(tokenizer, "chatml", None)
    served = Served("run", None, tokenizer, encoder, None, False, 8, partial(presented, cfg),
                    learned=partial(as_learned, cfg))
    # The model wrote -46 for 12-76=; the client saw (and sends back) -64.
    assert served.present("-46") == "-64"
    sent = Example(prompt="3-8=", response="", history=(("12-76=", "-64"), ("Hi!", "Hello!")))
    wrote = Example(prompt="3-8=", response="", history=(("12-76=", "-46"), ("Hi!", "Hello!")))
    assert served.prompt_ids(sent) == encoder.prompt_ids(wrote)
    assert served.prompt_ids(sent) != encoder.prompt_ids(sent)
    plain = Served("base", None, tokenizer, encoder, None, False, 8)  # a base model: as sent
    assert plain.prompt_ids(sent) == encoder.prompt_ids(sent)
