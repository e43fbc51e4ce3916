"""Tests for labnotes.tokenizer: special ids, caching, word ids, lowercasing, HF bridge."""

from __future__ import annotations

from pathlib import Path

import pytest

from labnotes import tokenizer as tokenizer_module
from labnotes.data import Corpus, CorpusError, embedded_corpus, pack_blocks
from labnotes.tokenizer import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Tokenizer,
    TokenizerConfig,
    train_tokenizer,
)

SMALL = TokenizerConfig(vocab_size=300, min_frequency=1)
WORDS = "the cat sat on a mat while tokenization of international words happened quickly".split()


def toy_corpus(name: str = "toy") -> Corpus:
    documents = tuple(
        tuple(
            f"{WORDS[(d + s) % len(WORDS)].capitalize()} {' '.join(WORDS[s:] + WORDS[:s])}."
            for s in range(4)
        )
        for d in range(12)
    )
    return Corpus(name, documents)


@pytest.fixture
def trained(tmp_path: Path) -> Tokenizer:
    return train_tokenizer(toy_corpus(), SMALL, cache=tmp_path)


def test_special_tokens_have_fixed_ids(trained: Tokenizer) -> None:
    assert (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID) == (0, 1, 2, 3, 4)
    assert SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert trained.token_to_id(token) == token_id and trained.id_to_token(token_id) == token
    assert SPECIAL_TOKENS[0] not in trained.decode(trained.encode("the cat"))
    assert trained.backend.post_processor is None  # [CLS]/[SEP] are added by pack_blocks, not here
    assert MASK_ID not in trained.encode("the [MASK] sat")  # text cannot smuggle in special tokens


def test_training_is_deterministic() -> None:
    # tokenizers' own WordPieceTrainer gives a different vocabulary on almost every run of this
    # tiny corpus (many tied pair counts; huggingface/tokenizers#1794); ours must not
    corpus = toy_corpus()
    vocabularies = {
        tuple(sorted(tokenizer_module._train_backend(corpus, SMALL).get_vocab().items()))
        for _ in range(5)
    }
    assert len(vocabularies) == 1
    [vocabulary] = vocabularies
    assert any(token.startswith("##") for token, _ in vocabulary)


def test_cache_hit_does_not_retrain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = toy_corpus()
    first = train_tokenizer(corpus, SMALL, cache=tmp_path)
    files = list((tmp_path / "tokenizers").glob("*.json"))
    key = tokenizer_module.tokenizer_cache_key(corpus, SMALL)
    assert [file.name for file in files] == [f"{key}.json"]
    modified = files[0].stat().st_mtime_ns

    def no_training(*args: object) -> None:
        raise AssertionError("retrained although the cache should have been used")

    monkeypatch.setattr(tokenizer_module, "_train_backend", no_training)
    second = train_tokenizer(corpus, SMALL, cache=tmp_path)
    assert second.backend.get_vocab() == first.backend.get_vocab()
    assert files[0].stat().st_mtime_ns == modified
    # another corpus or another config is another cache entry
    with pytest.raises(AssertionError, match="retrained"):
        train_tokenizer(corpus, TokenizerConfig(vocab_size=301, min_frequency=1), cache=tmp_path)
    with pytest.raises(AssertionError, match="retrained"):
        train_tokenizer(Corpus("toy", corpus.documents[1:]), SMALL, cache=tmp_path)


def test_cache_uses_labnotes_cache_and_survives_damage(fresh_cache: Path) -> None:
    corpus = toy_corpus()
    first = train_tokenizer(corpus, SMALL)
    [file] = (fresh_cache / "tokenizers").glob("*.json")
    assert not list((fresh_cache / "tokenizers").glob("*.tmp"))
    file.write_text("{ truncated")
    assert train_tokenizer(corpus, SMALL).backend.get_vocab() == first.backend.get_vocab()
    assert Tokenizer.load(file).backend.get_vocab() == first.backend.get_vocab()  # rewritten whole


def test_word_ids_group_wordpiece_continuations(trained: Tokenizer) -> None:
    text = "Tokenization internationalizes quickly."
    ids, words = trained.encode_with_words(text)
    tokens = [trained.id_to_token(token_id) for token_id in ids]
    assert len(ids) == len(words) and words[0] == 0
    assert any(token.startswith("##") for token in tokens)  # a small vocabulary must split words
    for previous, (token, word) in zip(words, list(zip(tokens, words))[1:]):
        assert word == (previous if token.startswith("##") else previous + 1)
    assert words[-1] == words[-2] + 1  # punctuation is a word of its own
    assert trained.decode(ids) == "tokenization internationalizes quickly."
    # "?" and "q" were never seen in training: a word with an unknown character is [UNK] whole
    assert trained.encode("cat ?") == [trained.token_to_id("cat"), UNK_ID]
    assert trained.encode("cat tokenizationq") == [trained.token_to_id("cat"), UNK_ID]


def test_lowercase(tmp_path: Path) -> None:
    lower = train_tokenizer(toy_corpus(), SMALL, cache=tmp_path)
    assert lower.encode("The CAT Sat") == lower.encode("the cat sat")
    cased_config = TokenizerConfig(vocab_size=300, min_frequency=1, lowercase=False)
    cased = train_tokenizer(toy_corpus(), cased_config, cache=tmp_path)
    assert cased.encode("The CAT Sat") != cased.encode("the cat sat")


def test_encode_corpus_matches_sentence_encoding(trained: Tokenizer) -> None:
    corpus = toy_corpus()
    encoded = trained.encode_corpus(corpus)
    assert [len(document) for document in encoded] == [
        len(document) for document in corpus.documents
    ]
    for document, sentences in zip(corpus.documents, encoded):
        for sentence, pair in zip(document, sentences):
            assert pair == trained.encode_with_words(sentence)
    blocks = pack_blocks(encoded, 32, cls_id=CLS_ID, sep_id=SEP_ID, pad_id=PAD_ID)
    for row, row_words in zip(blocks.input_ids.tolist(), blocks.word_ids.tolist()):
        for token, word, previous in zip(row[2:], row_words[2:], row_words[1:]):
            if trained.id_to_token(token).startswith("##"):
                assert word == previous != -1  # "##" pieces keep their word's id inside blocks


def test_save_and_load_round_trip(trained: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "saved" / "tokenizer.json"
    trained.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.vocab_size == trained.vocab_size
    assert loaded.encode_with_words("the cat sat") == trained.encode_with_words("the cat sat")


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="empty"):
        train_tokenizer(Corpus("nothing", ()), SMALL, cache=tmp_path)


def test_to_transformers(trained: Tokenizer) -> None:
    hf = trained.to_transformers()
    special_ids = (hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id,
                   hf.mask_token_id)
    assert special_ids == (0, 1, 2, 3, 4)
    assert hf("the cat sat")["input_ids"] == [CLS_ID, *trained.encode("the cat sat"), SEP_ID]
    assert hf.convert_ids_to_tokens(hf("the [MASK] sat")["input_ids"])[2] == "[MASK]"
    assert len(hf) == trained.vocab_size


def test_default_tokenizer_on_embedded_corpus() -> None:
    corpus = embedded_corpus()
    tokenizer = train_tokenizer(corpus)
    assert tokenizer.vocab_size == TokenizerConfig().vocab_size == 8192
    ids, words = tokenizer.encode_with_words("The gradient flows backwards through the network.")
    assert UNK_ID not in ids and words == sorted(words)
    assert train_tokenizer(corpus).backend.get_vocab() == tokenizer.backend.get_vocab()


def test_prepare_corpus_sees_an_edited_data_file(tmp_path):
    import os

    from labnotes.tokenizer import CorpusConfig, prepare_corpus
    from tests.test_cli import write_small_corpus

    path = write_small_corpus(tmp_path / "small.txt", documents=60, seed=0)
    first = prepare_corpus(CorpusConfig(data=str(path), vocab_size=300))
    assert prepare_corpus(CorpusConfig(data=str(path), vocab_size=300)) is first  # cached
    write_small_corpus(path, documents=80, seed=1)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = prepare_corpus(CorpusConfig(data=str(path), vocab_size=300))
    assert second is not first
    assert len(second.train_documents) + len(second.valid_documents) > \
        len(first.train_documents) + len(first.valid_documents)
