"""ROUGE-1/2/L and BLEU-4 as ChatGLM-6B's ``ptuning/main.py`` and LLaMA-Factory compute
them, so that scores compare with their published tables. Pure functions of strings.

- ROUGE: both texts are cut into words by jieba and joined with spaces, then scored as
  ``rouge_chinese.Rouge().get_scores`` does: its sentence cut and whitespace clean-up,
  ROUGE-N over the sets of distinct n-grams, ROUGE-L over the longest common
  subsequence of all words; the F-score (with its 1e-8 in the denominator).
- BLEU-4: characters as tokens, NLTK's ``sentence_bleu`` with uniform weights and
  smoothing method 3 (NIST geometric: the k-th n-gram order without a match counts
  1 / (2^k * its n-gram count)).

Each score is x 100, rounded to 4 places as ChatGLM does; an empty prediction or
reference scores 0. The reference libraries are not imported here (the tests check
that these functions equal them); jieba is, for the word cut.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

__all__ = ["TEXT_METRICS", "text_scores", "rouge_scores", "bleu4"]

TEXT_METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")


def _jieba_words(text: str) -> str:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # "Building prefix dict ..." on first use
    return " ".join(jieba.cut(text))


def _cut_sentences(para: str) -> list[str]:
    """rouge_chinese's ``Rouge.cut_sent``, regular expressions included."""
    para = re.sub(r"([。！？\?])([^”’])", r"\1\n\2", para)
    para = re.sub(r"(\.{6})([^”’])", r"\1\n\2", para)
    para = re.sub(r"(\…{2})([^”’])", r"\1\n\2", para)
    para = re.sub(r"([。！？\?][”’])([^，。！？\?])", r"\1\n\2", para)
    return para.rstrip().split("\n")


def _rouge_words(joined: str) -> list[str]:
    sentences = [" ".join(s.split()) for s in _cut_sentences(joined) if len(s) > 0]
    return [w for s in sentences for w in s.split(" ")]


def _f_score(overlap: int, hyp: int, ref: int) -> float:
    precision = overlap / hyp if hyp else 0.0
    recall = overlap / ref if ref else 0.0
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


def _ngram_set(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _lcs_length(x: list[str], y: list[str]) -> int:
    row = [0] * (len(y) + 1)
    for a in x:
        prev_diag = 0
        for j, b in enumerate(y, start=1):
            keep = row[j]
            row[j] = prev_diag + 1 if a == b else max(row[j], row[j - 1])
            prev_diag = keep
    return row[-1]


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, -2 and -L F-scores x 100 (see the module docstring)."""
    hyp_joined, ref_joined = _jieba_words(prediction), _jieba_words(reference)
    if not hyp_joined.split() or not ref_joined.split():
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    hyp, ref = _rouge_words(hyp_joined), _rouge_words(ref_joined)
    out = {}
    for n in (1, 2):
        h, r = _ngram_set(hyp, n), _ngram_set(ref, n)
        out[f"rouge-{n}"] = round(_f_score(len(h & r), len(h), len(r)) * 100, 4)
    lcs = _lcs_length(ref, hyp)
    out["rouge-l"] = round(_f_score(lcs, len(hyp), len(ref)) * 100, 4)
    return out


def bleu4(prediction: str, reference: str) -> float:
    """Character BLEU-4 x 100 with smoothing method 3 (see the module docstring)."""
    hyp, ref = list(prediction), list(reference)
    matches, totals = [], []
    for n in range(1, 5):
        counts = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        ref_counts = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        matches.append(sum(min(c, ref_counts[g]) for g, c in counts.items()))
        totals.append(max(1, sum(counts.values())))
    if matches[0] == 0:
        return 0.0
    logs, k = [], 1
    for m, t in zip(matches, totals):
        if m == 0:  # NIST geometric smoothing
            logs.append(math.log(1 / (2**k * t)))
            k += 1
        else:
            logs.append(math.log(m / t))
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return round(brevity * math.exp(math.fsum(0.25 * x for x in logs)) * 100, 4)


def text_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L and BLEU-4, each x 100: ``{"rouge-1", "rouge-2", "rouge-l", "bleu-4"}``."""
    return {**rouge_scores(prediction, reference), "bleu-4": bleu4(prediction, reference)}
