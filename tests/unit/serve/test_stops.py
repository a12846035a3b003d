"""Stop strings: a stream cut piece by piece sends what the whole answer cut at once is."""

from __future__ import annotations

import random

import pytest

from tasktune.serve.stops import StopScanner, cut_at_stop


@pytest.mark.parametrize("text,stops,expected", [
    ("12+3=15", ["="], ("12+3", True)),
    ("12+3=15", ["5", "+"], ("12", True)),  # the earliest of several
    ("12+3=15", ["x"], ("12+3=15", False)),
    ("aab", ["ab"], ("a", True)),
    ("abcd", ["abcd", "c"], ("ab", True)),  # "c" is complete first, though "abcd" starts first
    ("abaabab", ["aba", "b"], ("a", True)),
    ("", ["a"], ("", False)),
])
def test_cut_at_stop(text, stops, expected):
    assert cut_at_stop(text, stops) == expected


def _streamed(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(p) for p in pieces) + scanner.flush()
    return out, scanner.stopped


@pytest.mark.parametrize("seed", range(400))
def test_any_split_of_a_stream_gives_the_whole_answers_cut(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice("ab=\n ") for _ in range(rng.randint(0, 20)))
    stops = ["".join(rng.choice("ab=\n") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 4))]
    if text and seed % 2:  # stops taken from the text itself: they overlap and nest
        stops = [text[i : i + rng.randint(1, 4)] for i in (rng.randrange(len(text)) for _ in range(rng.randint(1, 4)))]
    cuts = sorted(rng.sample(range(len(text) + 1), rng.randint(0, len(text) + 1)))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    assert _streamed(pieces, stops) == cut_at_stop(text, stops)


def test_text_that_might_begin_a_stop_string_waits_for_the_next_piece():
    scanner = StopScanner(["\n\n"])
    assert scanner.feed("15\n") == "15"  # "\n" may begin the stop string
    assert scanner.feed("x") == "\nx"  # it did not
    assert scanner.feed("\n") == "" and scanner.feed("\n") == "" and scanner.stopped
    assert scanner.feed("more") == "" and scanner.flush() == ""
