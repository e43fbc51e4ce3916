"""The Chinese whole-word masking page: cloze tests (hypothesis), the leak measure, the arms'
settings, and a short run through the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labnotes.chinese_wwm import (ChineseWWMConfig, character_cloze, mlm_settings,
                                  visible_sibling_share, whole_word_cloze)
from labnotes.cli import main
from labnotes.data import Blocks
from labnotes.mlm import IGNORE
from labnotes.tokenizer import MASK_ID
from labnotes.training import read_metrics
from tests.test_chinese import TINY, write_chinese_stories


@st.composite
def blocks_with_words(draw) -> Blocks:
    """Rows of [CLS] words... [SEP] [PAD]...: words of 1-4 tokens, word ids 0.. per row."""
    rows, length = draw(st.integers(1, 4)), draw(st.integers(4, 24))
    ids, words = [], []
    for _ in range(rows):
        row_ids, row_words, word = [2], [-1], 0
        while len(row_ids) < length - 1 and draw(st.booleans() | st.just(True)):
            size = min(draw(st.integers(1, 4)), length - 1 - len(row_ids))
            row_ids += [draw(st.integers(5, 99)) for _ in range(size)]
            row_words += [word] * size
            word += 1
        padding = length - 1 - len(row_ids)
        ids.append(row_ids + [3] + [0] * padding)
        words.append(row_words + [-1] + [-1] * padding)
    word_ids = torch.tensor(words)
    return Blocks(torch.tensor(ids), word_ids, word_ids == -1)


@settings(max_examples=60, deadline=None)
@given(blocks_with_words(), st.floats(0.05, 0.95), st.integers(0, 2**31 - 1))
def test_whole_word_cloze_hides_whole_words_of_two_or_more(blocks, rate, seed) -> None:
    cloze = whole_word_cloze(blocks, rate, torch.Generator().manual_seed(seed))
    hidden = cloze.labels != IGNORE
    assert torch.equal(cloze.labels[hidden], blocks.input_ids[hidden])
    assert (cloze.inputs[hidden] == MASK_ID).all()  # the answer is never in the input
    assert torch.equal(cloze.inputs[~hidden], blocks.input_ids[~hidden])
    assert not (hidden & blocks.special_tokens_mask).any()
    for row in range(len(blocks)):
        for word in blocks.word_ids[row].unique().tolist():
            if word < 0:
                continue
            in_word = hidden[row][blocks.word_ids[row] == word]
            assert in_word.all() or not in_word.any()  # never part of a word
            if len(in_word) == 1:
                assert not in_word.any()  # single-character words are not in this test
    again = whole_word_cloze(blocks, rate, torch.Generator().manual_seed(seed))
    assert torch.equal(again.inputs, cloze.inputs)  # fixed generator, same test
    numbers = cloze.word_of_target[hidden]
    assert (numbers >= 0).all() and (cloze.word_of_target[~hidden] == -1).all()


@settings(max_examples=40, deadline=None)
@given(blocks_with_words(), st.integers(0, 2**31 - 1))
def test_character_cloze_hides_single_real_tokens(blocks, seed) -> None:
    cloze = character_cloze(blocks, 0.5, torch.Generator().manual_seed(seed))
    hidden = cloze.labels != IGNORE
    assert not (hidden & blocks.special_tokens_mask).any()
    assert (cloze.inputs[hidden] == MASK_ID).all()
    numbers = cloze.word_of_target[hidden].tolist()
    assert len(numbers) == len(set(numbers))  # every hidden character is its own group


def test_cloze_rates_within_binomial_bounds() -> None:
    length = 64
    word_ids = torch.arange(length - 2).div(2, rounding_mode="floor")  # two-token words
    word_ids = torch.cat([torch.tensor([-1]), word_ids, torch.tensor([-1])]).repeat(400, 1)
    ids = torch.where(word_ids >= 0, torch.full_like(word_ids, 7), torch.full_like(word_ids, 2))
    blocks = Blocks(ids, word_ids, word_ids == -1)
    for make, units in ((whole_word_cloze, 400 * 31), (character_cloze, 400 * 62)):
        cloze = make(blocks, 0.15, torch.Generator().manual_seed(0))
        share = (cloze.labels != IGNORE).sum().item() / (400 * 62)
        assert abs(share - 0.15) < 5 * math.sqrt(0.15 * 0.85 / units)


def test_visible_sibling_share_examples() -> None:
    word_ids = torch.tensor([[-1, 0, 0, 1, 2, 2, 2, -1]])
    selected = torch.tensor([[0, 1, 0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    # word 0: its selected token sees its sibling; word 1 has one token; word 2 is all hidden
    assert visible_sibling_share(word_ids, selected) == pytest.approx(1 / 4)
    assert visible_sibling_share(word_ids, torch.zeros_like(selected)) == 0.0


def test_masking_stands_for_mlm_settings() -> None:
    character = mlm_settings(ChineseWWMConfig(masking="character"), gold_available=True)
    assert not character.whole_word and character.corpus.words == "characters"
    gold = mlm_settings(ChineseWWMConfig(masking="gold"), gold_available=True)
    assert gold.whole_word and gold.corpus.words == "spaces"
    assert mlm_settings(ChineseWWMConfig(), gold_available=False).corpus.words is None
    jieba = ChineseWWMConfig(masking="jieba")
    assert mlm_settings(jieba, gold_available=True).corpus.words == "jieba"
    assert jieba.corpus.words is None  # the configuration itself is not changed
    with pytest.raises(ValueError, match="masking must be one of"):
        ChineseWWMConfig(masking="ltp")


def test_train_chinese_wwm_lowers_both_cloze_losses(tmp_path: Path) -> None:
    text = write_chinese_stories(tmp_path / "zh.txt")
    out = tmp_path / "wwm"
    assert main(["train", "chinese_wwm", "--data", str(text), "--steps", "120",
                 "--batch-size", "32", "--seq-len", "40", "--out", str(out),
                 "--set", "eval_every=60", "--set", "lr=5e-3", "--set", "masking=jieba",
                 *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    for test in ("word", "character"):
        assert evals[-1][f"{test}_cloze_nll"] < evals[0][f"{test}_cloze_nll"]
        assert summary[f"{test}_cloze_nll"] < summary[f"{test}_cloze_baseline"] - 0.3
    assert summary["word_cloze_words"] > 20
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()


def test_bad_masking_is_refused_with_the_choices(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "chinese_wwm", "--set", "masking=ltp", "--out", str(out)]) == 2
    assert "character, jieba, gold" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- the two labelled tasks

def tiny_tokenizer(characters: str):
    from labnotes.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerConfig, _bert_backend
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *characters])}
    return Tokenizer(_bert_backend(vocab, TokenizerConfig()))


def test_character_tags_give_every_character_its_gold_word_tag() -> None:
    from labnotes.chinese_wwm import character_tags
    tokenizer = tiny_tokenizer("中国人民站起来了。")
    tag_ids = {"ns": 0, "n": 1, "v": 2, "w": 3}
    ids, labels = character_tags(tokenizer, "中国 人民 站起来 。", ("ns", "n", "v", "w"), tag_ids)
    assert tokenizer.decode(ids) == "中 国 人 民 站 起 来 。"
    assert labels == [0, 0, 1, 1, 2, 2, 2, 3]
    ids, labels = character_tags(tokenizer, "中国 人 。", ("ns", "n", "w"), tag_ids)  # 人 alone
    assert labels == [0, 0, 1, 3]


def test_peoples_daily_tags_cover_the_validation_sentences() -> None:
    from labnotes.data import load_corpus, peoples_daily_tags, split_corpus
    tags_of = peoples_daily_tags()
    _, valid = split_corpus(load_corpus("peoples-daily"))
    sentences = [sentence for document in valid.documents for sentence in document]
    assert all(len(tags_of[s]) == len(s.split(" ")) for s in sentences)
    assert len({tag for tags in tags_of.values() for tag in tags}) == 44
    first = "１２月 ３１日 ， 中共中央 总书记 、 国家 主席 江 泽民 发表 １９９８年 新年 讲话"
    tags = next(tags for sentence, tags in tags_of.items() if sentence.startswith(first))
    assert tags[:10] == ("t", "t", "w", "nt", "n", "w", "n", "n", "nr", "nr")  # the file's line 4


def test_pos_task_needs_the_tagged_corpus() -> None:
    from labnotes.chinese_wwm import pos_task
    from labnotes.tokenizer import CorpusConfig
    with pytest.raises(ValueError, match="needs --data peoples-daily"):
        pos_task(tiny_tokenizer("中"), CorpusConfig(data="embedded"))


def test_sentiment_task_is_balanced_disjoint_and_deterministic() -> None:
    from labnotes.data import chinese_sentiment_reviews
    from labnotes.downstream import DownstreamConfig, sentiment_task
    from labnotes.tokenizer import CLS_ID, PAD_ID, SEP_ID
    tokenizer = tiny_tokenizer("好不错差很")
    config = DownstreamConfig(max_train_examples=200, max_test_examples=100, max_tokens=20)
    task = sentiment_task(tokenizer, config)
    assert (len(task.train), len(task.test)) == (200, 100)
    assert int(task.train.labels.sum()) == 100 and int(task.test.labels.sum()) == 50
    train_reviews, test_reviews = chinese_sentiment_reviews()
    texts = []
    for part, reviews in ((task.train, train_reviews), (task.test, test_reviews)):
        chosen = [reviews[d] for d in part.documents.tolist()]
        assert [label for _, label in chosen] == part.labels.tolist()
        texts.append({text for text, _ in chosen})
        first = part.input_ids[0][part.input_ids[0] != PAD_ID].tolist()
        ids = tokenizer.encode_with_words(chosen[0][0])[0][:18]
        assert first == [CLS_ID, *ids, SEP_ID]  # the review itself, cut to max_tokens
    assert not texts[0] & texts[1]  # no review on both sides
    again = sentiment_task(tokenizer, config)
    assert torch.equal(again.train.input_ids, task.train.input_ids)
    assert torch.equal(again.test.documents, task.test.documents)


def pos_fine_tuning_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pos_fine_tuning",
                                                  Path("scripts/pos_fine_tuning.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stored_pos_budget_table_redraws_byte_for_byte(tmp_path: Path) -> None:
    from labnotes.experiments.common import redraw

    stored = Path("docs/results/chinese_wwm_pos")
    (tmp_path / "results.json").write_bytes((stored / "results.json").read_bytes())
    redraw(pos_fine_tuning_script(), tmp_path)
    for name in ("table.md", "budget.svg"):
        assert (tmp_path / name).read_bytes() == (stored / name).read_bytes(), name


def test_pos_budget_without_trained_encoders_says_what_to_run(tmp_path: Path,
                                                               monkeypatch) -> None:
    script = pos_fine_tuning_script()
    monkeypatch.setattr(script, "RUNS", tmp_path / "nothing-here")
    with pytest.raises(SystemExit, match="run `labnotes experiment chinese_wwm` first"):
        script.run_experiment(tmp_path / "work")
    assert not (tmp_path / "work").exists()
