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

