"""OpenAI's ``stop`` strings: an answer ends before the first one it contains.

Whole answers are cut with :func:`cut_at_stop`. A stream cannot send a piece that might
be the start of a stop string until the next pieces show whether it is one, so
:class:`StopScanner` holds back the longest tail of the text that begins some stop
string and releases it once it cannot.
"""

from __future__ import annotations

__all__ = ["cut_at_stop", "StopScanner"]


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the stop string that generation completes first (the earliest end;
    of two ending together, the one that starts first), and whether one was found.

    Example:
        >>> cut_at_stop("12+3=15\\nnext", ["\\n", "="])
        ('12+3', True)
        >>> cut_at_stop("abcd", ["abcd", "c"])  # "c" is complete before "abcd" is
        ('ab', True)
    """
    hits = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    return (text[: min(hits)[1]], True) if hits else (text, False)


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper beginning of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class StopScanner:
    """Feed a stream's pieces; get back the text that is safe to send.

    Example:
        >>> s = StopScanner(["END"])
        >>> s.feed("12 E"), s.feed("N"), s.feed("D more"), s.stopped
        ('12 ', '', '', True)
    """

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.stopped = False
        self._pending = ""

    def feed(self, piece: str) -> str:
        """The part of the text so far that is now known not to reach a stop string."""
        if self.stopped:
            return ""
        text, self.stopped = cut_at_stop(self._pending + piece, self.stops)
        if self.stopped:
            self._pending = ""
            return text
        keep = _held_back(text, self.stops)
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, once the answer has ended without a stop string."""
        text, self._pending = self._pending, ""
        return "" if self.stopped else text
