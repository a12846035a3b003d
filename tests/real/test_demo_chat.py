"""The demo run used as people use it: ten problems in a row in one `tasktune chat`
conversation, through a pseudo-terminal, every answer right.

It needs the trained demo run (`make demo` writes runs/arith_lora; TASKTUNE_DEMO_RUN names
another folder) and skips, saying so, where there is none: training it takes minutes, so
the default test run does not; `.ci/run` runs `make demo` and then this test.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from conftest import Terminal

pytestmark = pytest.mark.real_model

RUN = Path(os.environ.get("TASKTUNE_DEMO_RUN", Path(__file__).resolve().parents[2] / "runs" / "arith_lora"))
ZH = (("问", "答"), ("口算", "解"), ("计算题", "解答"))


def _problems(seed: int = 29) -> list[tuple[str, int]]:
    """Ten fresh 2-digit problems, + and - alternating, every third in one of the
    tutorial's Chinese pairs (a prompt style the demo asks in its suites)."""
    rng = random.Random(seed)
    out = []
    for i in range(10):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        op = "+-"[i % 2]
        text = f"{a}{op}{b}="
        if i % 3 == 2:
            ask, reply = ZH[i % len(ZH)]
            text = f"{ask}: {text} {reply}:"
        out.append((text, a + b if op == "+" else a - b))
    return out


@pytest.mark.skipif(not (RUN / "adapter").is_dir(), reason=f"no trained demo run at {RUN}: run `make demo` first "
                    "(or set TASKTUNE_DEMO_RUN to a run folder of configs/arith_lora.yaml)")
def test_ten_problems_in_one_conversation_are_all_answered_right():
    term = Terminal("chat", "--run", str(RUN))
    answers = []
    try:
        term.read_until(b">>> ", timeout=300)
        for text, value in _problems():
            term.send(text + "\n")
            shown = term.read_until(b">>> ", timeout=120).decode("utf-8")
            found = re.search(r"answer: (-?\d+)", shown)
            answers.append((text, value, found and int(found.group(1)), shown.strip().splitlines()[-2:]))
        term.send("exit\n")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    wrong = [a for a in answers if a[1] != a[2]]
    assert not wrong, f"{len(wrong)} of 10 wrong in one conversation: {wrong}"
