"""ROUGE/BLEU equal the reference libraries (rouge-chinese over jieba words, NLTK's
sentence_bleu with smoothing method 3) computed the way ChatGLM-6B's ptuning/main.py does."""

from __future__ import annotations

import random

import jieba  # a dependency of tasktune: a broken install fails here, it is not skipped
import nltk.translate.bleu_score as nltk_bleu  # the reference BLEU; dev extras (make test installs them): imported, not skipped
import pytest
import rouge_chinese  # the reference ROUGE

from tasktune.eval.text import TEXT_METRICS, bleu4, rouge_scores, text_scores

PAIRS = [
    ("减少空气污染的方法有很多，例如转向可再生能源。", "减少空气污染的方法有很多，例如使用公共交通工具。"),
    ("我们应该多喝水。", "多喝水对身体有好处！你同意吗？"),
    ("98+83=181", "98+83=171"),
    ("181", "181"),
    ("The cat sat on the mat.", "The cat is on the mat."),
    ("It takes 2/2=1 bolt of white fiber.\nSo the total is 2+1=3.\n#### 3", "It takes 2/2=<<2/2=1>>1 bolt.\n#### 3"),
    ("完全不同的句子", "毫无关系"),
    ("一", "一二三四五六七八九十"),
    ("这是第一句。这是第二句……还有第三句！", "这是第一句。第二句？“引号。”然后"),
    ("a", "b"),
    ("重复 重复 重复 重复", "重复"),
    ("  空格   很多  ", "空格很多"),
    ("Line one\n\nLine two", "Line one\nLine two"),
    ("......句号", "......句号"),
]


def _chatglm_reference(pred: str, label: str) -> dict[str, float]:
    """ChatGLM-6B ptuning/main.py compute_metrics, for one pair."""
    hypothesis, reference = list(jieba.cut(pred)), list(jieba.cut(label))
    if len(" ".join(hypothesis).split()) == 0 or len(" ".join(reference).split()) == 0:
        result = {"rouge-1": {"f": 0.0}, "rouge-2": {"f": 0.0}, "rouge-l": {"f": 0.0}}
    else:
        result = rouge_chinese.Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]
    out = {k: round(v["f"] * 100, 4) for k, v in result.items()}
    bleu = nltk_bleu.sentence_bleu([list(label)], list(pred), smoothing_function=nltk_bleu.SmoothingFunction().method3)
    out["bleu-4"] = round(bleu * 100, 4)
    return out


def _random_pairs(n: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    alphabet = list("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生") + list(
        "，。！？、 \n…”’abc123"
    )
    words = ["天气", "今天", "很好", "我们", "学习", "数学", "模型", "训练", "问题", "答案"]

    def text() -> str:
        parts = [rng.choice(words) if rng.random() < 0.5 else rng.choice(alphabet) for _ in range(rng.randint(0, 30))]
        return "".join(parts)

    return [(text(), text()) for _ in range(n)]


@pytest.mark.parametrize("pred, label", PAIRS + _random_pairs(60))
def test_scores_equal_the_chatglm_recipe_on_the_reference_libraries(pred, label):
    assert text_scores(pred, label) == pytest.approx(_chatglm_reference(pred, label), abs=1e-9)


@pytest.mark.parametrize("pred, label", [("", "参考答案"), ("预测", ""), ("", ""), ("   ", "a"), ("\n", "答案")])
def test_empty_prediction_or_reference_scores_zero(pred, label):
    scores = text_scores(pred, label)
    assert set(scores) == set(TEXT_METRICS)
    assert all(v == 0.0 for v in scores.values())
    assert scores == _chatglm_reference(pred, label)


def test_identical_texts_score_100_and_disjoint_texts_0():
    assert rouge_scores("今天天气很好", "今天天气很好") == pytest.approx({"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0}, abs=1e-4)
    assert bleu4("今天天气很好", "今天天气很好") == pytest.approx(100.0)
    assert text_scores("甲乙丙", "丁戊己") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
