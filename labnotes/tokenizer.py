"""WordPiece tokenizer.

How text becomes token ids on this site: a small BERT-style WordPiece vocabulary trained on the
corpus with Hugging Face `tokenizers`, cached on disk, and the word boundaries that whole-word
and span masking need.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from labnotes.data import (CHINESE_CHARACTER, MIN_BLOCK_TOKENS, Blocks, Corpus, CorpusError,
                           EncodedSentence, atomic_write_text, cache_dir, load_corpus, pack_blocks,
                           split_corpus)

if TYPE_CHECKING:  # transformers is only needed by tests that compare against it
    from transformers import PreTrainedTokenizerFast

# %% [markdown]
# # WordPiece tokenizer
#
# Models read integers, not text. BERT (arXiv:1810.04805, §3) splits text into **WordPiece**
# units with a 30,000-entry vocabulary: frequent words are one token (`the`, `model`), rarer
# words are split into pieces, and a piece that continues a word carries the prefix `##`
# (`tokenization` → `token`, `##ization`). A rare word is cut into more pieces rather than
# lost. But a word with even one character outside the vocabulary's alphabet becomes a single
# `[UNK]` as a whole: with `☃` unknown, `tokenization☃` is `[UNK]`, not `token`, `##ization`,
# `[UNK]`. BERT's own `WordpieceTokenizer` does the same (google-research/bert
# `tokenization.py`).
#
# We train our own vocabulary on the corpus instead of downloading BERT's: it runs offline, it
# takes seconds, and it fits the text we train on. The default has 8,192 entries: our models are
# tiny, and the embedding table ($|V| \times d$ parameters) would otherwise dominate them.
#
# ## Special tokens at fixed ids
#
# Five tokens are not text. Their ids are the same for every vocabulary we train, so pages can
# use the constants below without asking the tokenizer:
#
# | id | token | used for |
# |---|---|---|
# | 0 | `[PAD]` | filling a block up to its length; attention ignores it |
# | 1 | `[UNK]` | a word the vocabulary cannot spell (rare with WordPiece) |
# | 2 | `[CLS]` | the first token of every block; sentence-level heads read it |
# | 3 | `[SEP]` | the end of a segment |
# | 4 | `[MASK]` | the token that hides a word in masked language modelling |

# %%
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8192  # entries, special tokens and single characters included
    lowercase: bool = True  # like BERT-uncased: "The" and "the" are one token
    min_frequency: int = 2  # a merge must be seen at least this often


# %% [markdown]
# ## The pipeline
#
# A `tokenizers.Tokenizer` is four stages, each a choice BERT made:
#
# 1. **Normalizer** (`BertNormalizer`): clean control characters, put spaces around Chinese
#    characters, and (uncased) lowercase and strip accents.
# 2. **Pre-tokenizer** (`BertPreTokenizer`): split on whitespace and punctuation. Each resulting
#    piece of text is a **word**: `don't` is three words, `don`, `'`, `t`.
# 3. **Model** (`WordPiece`): split each word greedily into the longest vocabulary entries,
#    left to right; continuation pieces start with `##`.
# 4. **Decoder**: glue `##` pieces back onto their word when turning ids into text.
#
# Training chooses the vocabulary. The `tokenizers` WordPiece trainer starts from single
# characters and repeatedly adds the most frequent pair of adjacent pieces (the BPE procedure).
# BERT's own vocabulary came from Google's WordPiece implementation (described by Wu et al.,
# arXiv:1609.08144, §4.1), which chooses its pieces by a different criterion; the encoding rule,
# longest match first with `##` continuations, is the same. We keep only the 1,000 most frequent
# characters in the alphabet (the default of the `tokenizers` BERT trainer), so stray symbols do
# not eat the vocabulary; a word that contains any other character becomes `[UNK]`. Chinese
# is the exception: its text is thousands of distinct characters, each a word of its own, and
# with only 1,000 of them one token in thirteen of the People's Daily corpus would be `[UNK]`.
# So every Chinese character seen at least `min_frequency` times joins the alphabet too, as
# `bert-base-chinese`'s vocabulary holds every common character; English text, which has no
# Chinese characters, gets exactly the vocabulary it had before.
#
# The special tokens are given to the trainer first, in the order above, so they get ids 0-4.
# We add no post-processor: `[CLS]` and `[SEP]` are placed by `pack_blocks` and the pages, never
# by the tokenizer.

# %%
LIMIT_ALPHABET = 1000
_TWIN_OFFSET = 0xF0000  # Unicode's private use plane 15 holds a "twin" of every BMP character


def _bert_backend(vocab: dict[str, int], config: TokenizerConfig) -> tokenizers.Tokenizer:
    """The four-stage BERT pipeline around a WordPiece vocabulary."""
    model = models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    backend = tokenizers.Tokenizer(model)
    backend.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(list(SPECIAL_TOKENS))  # already ids 0-4; marks them as special
    return backend


# %% [markdown]
# ### Making training deterministic
#
# The `tokenizers` WordPiece trainer is not deterministic (huggingface/tokenizers issue #1794,
# still open in version 0.23): it gives the `##` pieces their ids in hash-map order, and those
# ids break ties between equally frequent merges, so two runs on the same text can end with
# slightly different vocabularies. We want the same corpus to give the same tokenizer on every
# machine, so we run the same algorithm with one change of spelling. Instead of a `##` prefix, a
# character that continues a word is written as its "twin" from Unicode's private use area
# (code point `0xF0000 + ord(c)`). Now every symbol is a single character, the trainer
# (`BpeTrainer`, the algorithm `WordPieceTrainer` wraps) numbers the alphabet in sorted order, and
# ties are broken the same way every time. At the end each twin-spelled entry is written back
# with `##`, giving the same kind of vocabulary the WordPiece trainer produces. (Measured on the
# embedded corpus: three runs of ours are identical; two runs of `WordPieceTrainer` differ in 6
# of 8,192 entries and in the ids of 1,812 of them.)

# %%
def _twin_spelling(words: Counter[str], min_frequency: int = 2) -> Counter[str]:
    """Word counts with continuation characters spelled as twins; rare characters dropped."""
    characters: Counter[str] = Counter()
    for word, count in words.items():
        for character in word:
            characters[character] += count
    in_plane_0 = [c for c in characters if ord(c) < 0xFFFE]  # only these have twins
    by_frequency = sorted(in_plane_0, key=lambda c: (-characters[c], c))
    alphabet = set(by_frequency[:LIMIT_ALPHABET]) | {  # Chinese: every character seen twice
        c for c in in_plane_0 if characters[c] >= min_frequency and CHINESE_CHARACTER.match(c)}
    twins = _DeletingTable({ord(c): chr(_TWIN_OFFSET + ord(c)) for c in alphabet})
    spelled: Counter[str] = Counter()
    for word, count in words.items():
        first, rest = (word[0], word[1:]) if word[0] in alphabet else ("", word[1:])
        if twin := first + rest.translate(twins):
            spelled[twin] += count
    return spelled


class _DeletingTable(dict):
    """A str.translate table that deletes every character it does not list."""

    def __missing__(self, key: int) -> None:
        return None


def _from_twin_spelling(token: str) -> str:
    plain = "".join(chr(ord(c) - _TWIN_OFFSET) if ord(c) >= _TWIN_OFFSET else c for c in token)
    return "##" + plain if ord(token[0]) >= _TWIN_OFFSET else plain


def _train_backend(corpus: Corpus, config: TokenizerConfig) -> tokenizers.Tokenizer:
    """Train a WordPiece vocabulary on every sentence of `corpus` (a few seconds)."""
    sentences = [sentence for document in corpus.documents for sentence in document]
    if not any(sentences):
        raise CorpusError(f"corpus {corpus.name!r} is empty: there is no text to train on.")
    normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(
        word
        for sentence in sentences
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence))
    )
    spelled = _twin_spelling(words, config.min_frequency)
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    twin_backend = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    twin_backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    text = ((word + " ") * count for word, count in sorted(spelled.items()))
    twin_backend.train_from_iterator(text, trainer)
    vocab = {  # the special tokens got ids 0-4 because the trainer saw them first
        token if token in SPECIAL_TOKENS else _from_twin_spelling(token): token_id
        for token, token_id in twin_backend.get_vocab().items()
    }
    return _bert_backend(vocab, config)


# %% [markdown]
# ## Words, not just pieces
#
# Masking one piece of a word is a weak exercise: seeing `token` and `##s`, guessing the hidden
# `##ization` in between is easy. Whole-word masking (the google-research/bert README, 2019) hides
# all pieces of a word together, and SpanBERT (arXiv:1907.10529, §3.1) measures its spans in
# whole words. Both need to know which tokens form a word.
#
# `encode_with_words` therefore returns two lists of equal length: the token ids and, for every
# token, the index of the word it came from (`Encoding.word_ids` in `tokenizers`; a word is one
# piece of the pre-tokenizer). All `##` pieces share the id of the word they continue:
#
# | text | `token` | `##ization` | `is` | `fun` |
# |---|---|---|---|---|
# | word id | 0 | 0 | 1 | 2 |
#
# Two more details. Text that happens to contain `[MASK]` is spelled out as ordinary characters
# (`encode_special_tokens`), so a corpus can never smuggle special tokens into a block. And
# `encode_corpus` encodes all sentences in one `encode_batch` call, which runs in Rust on all
# cores instead of a Python loop. Chinese text needs one more step for its words, the section
# "Words in Chinese" below.

# %%
class Tokenizer:
    """A trained WordPiece tokenizer; `backend` is the `tokenizers.Tokenizer` underneath."""

    def __init__(self, backend: tokenizers.Tokenizer) -> None:
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if backend.token_to_id(token) != expected_id:
                raise ValueError(f"{token} must have id {expected_id}")
        backend.encode_special_tokens = True  # "[MASK]" in the text is text, not the mask token
        self.backend = backend

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_with_words(self, text: str, words: str = "characters") -> EncodedSentence:
        """(token ids, word ids): tokens of one word share its id; ids count from 0 per call.

        `words` says where Chinese words come from (see "Words in Chinese" below)."""
        encoding = self.backend.encode(text, add_special_tokens=False)
        return encoding.ids, chinese_word_ids(encoding.word_ids, encoding.offsets, text, words)

    def encode_corpus(self, corpus: Corpus,
                      words: str = "characters") -> list[list[EncodedSentence]]:
        """Every sentence of every document, encoded with word ids (documents stay separate)."""
        sentences = [sentence for document in corpus.documents for sentence in document]
        encodings = iter(self.backend.encode_batch(sentences, add_special_tokens=False))
        texts = iter(sentences)
        return [
            [
                (encoding.ids,
                 chinese_word_ids(encoding.word_ids, encoding.offsets, next(texts), words))
                for encoding in islice(encodings, len(document))
            ]
            for document in corpus.documents
        ]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text for `ids`; special tokens such as [MASK] stay visible unless skipped."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.backend.to_str())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    def to_transformers(self) -> PreTrainedTokenizerFast:
        """The same vocabulary as a `transformers` tokenizer (adds [CLS]/[SEP] like BERT's)."""
        from transformers import PreTrainedTokenizerFast

        backend = tokenizers.Tokenizer.from_str(self.backend.to_str())
        backend.encode_special_tokens = False  # HF pipelines expect "[MASK]" in text to be the mask
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )


# %% [markdown]
# ## Words in Chinese
#
# Chinese is written without spaces between words. BERT's normaliser puts a space around
# every Chinese character (google-research/bert `tokenization.py`, `_tokenize_chinese_chars`),
# so for the pre-tokenizer each character is a word of its own: `模型` is two words, `模` and
# `型`. Whole-word masking would then mask single characters, and a model can often fill in
# a hidden `型` from the visible `模` beside it. Chinese-BERT-wwm (Cui et al.,
# arXiv:1906.08101) masks real words instead, found by a word segmenter (LTP there).
#
# Tokens stay characters; only the **word ids** change. A segmenter cuts each sentence into
# words, and neighbouring tokens that lie in the same segmenter word get one word id, as long
# as at least one of them is a Chinese character: `１９９８年`, one word in the gold
# segmentation, becomes one word of two tokens (`１９９８` and `年`). Two tokens that are not
# Chinese keep BERT's own word boundaries, so English text gets exactly the word ids it had
# before, whatever the segmenter. Punctuation is never part of a word.
#
# `CorpusConfig.words` chooses where Chinese words come from:
#
# | `words` | Chinese words are |
# |---|---|
# | `"characters"` | single characters (BERT's own boundaries) |
# | `"spaces"` | the text between spaces: a corpus's **gold segmentation**, written as spaces |
# | `"jieba"` | the words of the `jieba` segmenter (an optional dependency: `pip install jieba`) |
# | `None` (auto) | `"spaces"` for a corpus marked `segmented`, else `"jieba"` if installed |
#
# Automatic choice without jieba falls back to characters and says so once on stderr, so a
# Chinese run never silently masks characters when you asked for words.

# %%
WORD_SOURCES = ("characters", "spaces", "jieba")
JIEBA_HINT = "pip install jieba (or: pip install 'labnotes[zh]')"


def _segments_from_spaces(sentence: str) -> list[int]:
    """For each character of `sentence`, the number of the space-separated word it is in."""
    numbers: list[int] = []
    for word, text in enumerate(re.split(r"(?<=\S)(?=\s)", sentence)):  # cut before spaces
        numbers += [word] * len(text)
    return numbers


def _segments_from_jieba(sentence: str) -> list[int]:
    """For each character of `sentence`, the number of the jieba word it is in."""
    try:
        import jieba
    except ImportError:
        raise CorpusError(f"words='jieba' needs the jieba segmenter: {JIEBA_HINT}") from None
    jieba.setLogLevel(60)  # no "Building prefix dict..." chatter on stderr
    numbers = [0] * len(sentence)
    for number, (_, start, end) in enumerate(jieba.tokenize(sentence)):
        numbers[start:end] = [number] * (end - start)
    return numbers


@functools.lru_cache(maxsize=None)
def _kind_of(character: str) -> tuple[bool, bool]:
    """(is a Chinese character, is punctuation). BERT's pre-tokenizer isolates both, so the
    first character of a token tells its kind."""
    return (bool(CHINESE_CHARACTER.match(character)),
            unicodedata.category(character).startswith("P"))


def chinese_word_ids(word_ids: Sequence[int], offsets: Sequence[tuple[int, int]],
                     sentence: str, words: str) -> list[int]:
    """BERT's word ids of one sentence with the tokens of each Chinese word given one id."""
    if words == "characters" or not CHINESE_CHARACTER.search(sentence):
        return list(word_ids)
    segments = (_segments_from_spaces if words == "spaces" else _segments_from_jieba)(sentence)
    merged: list[int] = []
    previous: tuple[int, int | None, bool] | None = None  # (BERT word, segment, is Chinese)
    for word, (start, _) in zip(word_ids, offsets):
        chinese, punctuation = _kind_of(sentence[start])  # a token never mixes kinds
        segment = None if punctuation else segments[start]  # punctuation is never in a word
        if previous is None:
            merged.append(0)
        else:
            same_segment = segment is not None and segment == previous[1]
            one_chinese_word = same_segment and (chinese or previous[2])
            merged.append(merged[-1] + (0 if word == previous[0] or one_chinese_word else 1))
        previous = (word, segment, chinese)
    return merged


def resolve_word_source(words: str | None, corpus: Corpus) -> str:
    """The word source to use for `corpus` (see the table above)."""
    if words is not None:
        if words not in WORD_SOURCES:
            raise ValueError(f"words must be one of {', '.join(WORD_SOURCES)} or None (auto), "
                             f"got {words!r}")
        return words
    if corpus.segmented:
        return "spaces"
    if not any(CHINESE_CHARACTER.search(s) for document in corpus.documents for s in document):
        return "characters"  # no Chinese: nothing to decide
    if importlib.util.find_spec("jieba") is None:
        print(f"labnotes: no word segmenter for the Chinese text of {corpus.name!r}, so whole-word "
              f"masking will mask single characters; {JIEBA_HINT}", file=sys.stderr)
        return "characters"
    return "jieba"


# %% [markdown]
# ## Training once: a cache keyed by what went in
#
# Training takes seconds, and every page and test wants a tokenizer, so the result is saved as
# JSON in `cache_dir()/tokenizers/`. The file name is a SHA-256 hash of everything the result
# depends on: the corpus text, the configuration, the `tokenizers` version and our pipeline's
# version number. Change any of them and the name changes, so a stale tokenizer is never reused;
# change none and the file is loaded instead of retrained. The file is written atomically (a
# temporary file, then `os.replace`), so an interrupted run leaves no broken tokenizer behind.

# %%
PIPELINE_VERSION = 2  # 2: Chinese characters beyond the 1,000-character alphabet


def tokenizer_cache_key(corpus: Corpus, config: TokenizerConfig) -> str:
    ingredients = {
        "corpus_sha256": hashlib.sha256(corpus.text().encode("utf-8")).hexdigest(),
        "config": asdict(config),
        "tokenizers": tokenizers.__version__,
        "pipeline": PIPELINE_VERSION,
    }
    return hashlib.sha256(json.dumps(ingredients, sort_keys=True).encode("utf-8")).hexdigest()


def train_tokenizer(
    corpus: Corpus, config: TokenizerConfig = TokenizerConfig(), *, cache: str | Path | None = None
) -> Tokenizer:
    """A WordPiece tokenizer for `corpus`, from `<cache>/tokenizers/` when already trained."""
    folder = (Path(cache) if cache is not None else cache_dir()) / "tokenizers"
    path = folder / f"{tokenizer_cache_key(corpus, config)}.json"
    if path.exists():
        try:
            return Tokenizer.load(path)
        except Exception:  # a damaged cache file (tokenizers raises plain Exception): retrain
            pass
    tokenizer = Tokenizer(_train_backend(corpus, config))
    tokenizer.save(path)
    return tokenizer


# %% [markdown]
# ## From a corpus to token blocks
#
# Every task starts the same way: load the corpus (the embedded default or `--data`), split
# it by document into training and validation parts ([the data page](data.md)), train (or load
# from the cache) the tokenizer above on the **training part only**, and encode both parts.
# Pages that train on single sequences then pack the encoded documents into fixed-length
# blocks; pages that need sentence pairs (NSP, SOP) build their own examples from the encoded
# documents.

# %%
@dataclass
class CorpusConfig:
    data: str | None = None  # None: the embedded corpus; a path; or a download name
    seq_len: int = 64
    vocab_size: int = 8192
    valid_fraction: float = 0.1
    words: str | None = None  # Chinese words: characters, spaces, jieba; None: automatic

    def __post_init__(self) -> None:
        if self.seq_len < MIN_BLOCK_TOKENS:
            raise ValueError(
                f"seq_len must be at least {MIN_BLOCK_TOKENS} tokens (got {self.seq_len})"
            )
        if self.vocab_size < 64:
            raise ValueError(f"vocab_size must be at least 64 (got {self.vocab_size})")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be between 0 and 1 (got {self.valid_fraction})")
        if self.words is not None and self.words not in WORD_SOURCES:
            raise ValueError(f"words must be one of {', '.join(WORD_SOURCES)} (got {self.words!r})")


@dataclass
class PreparedCorpus:
    tokenizer: Tokenizer
    train_documents: list  # documents -> sentences -> (token ids, word ids)
    valid_documents: list

    def blocks(self, split: str, seq_len: int, *, across_documents: bool = False) -> Blocks:
        documents = self.train_documents if split == "train" else self.valid_documents
        return pack_blocks(documents, seq_len, cls_id=CLS_ID, sep_id=SEP_ID, pad_id=PAD_ID,
                           source=f"the {split} split", across_documents=across_documents)


_PREPARED: dict[str, PreparedCorpus] = {}


def source_stamp(data: str | None) -> list:
    """When and how big the files behind `--data` are: an edited file is a new corpus."""
    path = Path(data) if data else None
    if path is None or not path.exists():
        return []  # the embedded corpus, or a download name (checked by its SHA-256)
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    return [[str(file), file.stat().st_mtime_ns, file.stat().st_size] for file in files]


def prepare_corpus(config: CorpusConfig) -> PreparedCorpus:
    key = json.dumps([config.data, source_stamp(config.data), config.vocab_size,
                      config.valid_fraction, config.words])
    if key not in _PREPARED:  # tasks in one process (experiments, tests) share the work
        corpus = load_corpus(config.data)
        words = resolve_word_source(config.words, corpus)
        train_part, valid_part = split_corpus(corpus, config.valid_fraction)
        tokenizer = train_tokenizer(train_part, TokenizerConfig(vocab_size=config.vocab_size))
        _PREPARED[key] = PreparedCorpus(tokenizer, tokenizer.encode_corpus(train_part, words),
                                        tokenizer.encode_corpus(valid_part, words))
    return _PREPARED[key]


# %% [markdown]
# The single-sequence pages (MLM, SpanBERT, ELECTRA) all want the same three things from
# that: the tokenizer, the training blocks and the validation blocks. `prepare_blocks` also
# fits the encoder's configuration to them — its vocabulary to the tokenizer's, its position
# table to at least the block length — so that a `--set corpus.vocab_size=...` or a longer
# `--seq-len` never meets a model of the wrong shape.

# %%
def prepare_blocks(corpus: CorpusConfig, model: Any, *,
                   across_documents: bool = False) -> tuple[Any, Any, Any]:
    """(tokenizer, training blocks, validation blocks); fits `model`, an EncoderConfig, to them."""
    prepared = prepare_corpus(corpus)
    model.vocab_size = prepared.tokenizer.vocab_size
    model.max_len = max(model.max_len, corpus.seq_len)
    return (prepared.tokenizer,
            prepared.blocks("train", corpus.seq_len, across_documents=across_documents),
            prepared.blocks("valid", corpus.seq_len, across_documents=across_documents))


# %% [markdown]
# ## Try it
#
# Run this page (`python -m labnotes.tokenizer`) to train the default tokenizer on the embedded
# corpus and see how a sentence is split.

# %%
if __name__ == "__main__":
    import time

    from labnotes.data import embedded_corpus

    corpus = embedded_corpus()
    started = time.perf_counter()
    tokenizer = train_tokenizer(corpus)
    print(f"vocabulary of {tokenizer.vocab_size} tokens ({time.perf_counter() - started:.1f} s)")
    ids, words = tokenizer.encode_with_words("Tokenization splits rare words into pieces.")
    for token_id, word in zip(ids, words):
        print(f"{tokenizer.id_to_token(token_id):>12}  word {word}")
