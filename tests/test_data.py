"""Tests for labnotes.data: corpora, errors, downloads, splits and block packing."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import platform
import random
import re
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labnotes import data
from labnotes.data import (
    DOWNLOADS,
    Corpus,
    CorpusError,
    DownloadSpec,
    build_embedded_corpus,
    cache_dir,
    download_corpus,
    embedded_corpus,
    embedded_source_files,
    load_corpus,
    pack_blocks,
    read_text_corpus,
    split_corpus,
    split_sentences,
)

CLS, SEP, PAD = 2, 3, 0


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


# ---------------------------------------------------------------------------- sentences


def test_split_sentences_basic_and_abbreviations() -> None:
    text = (
        "The cat sat.  It was happy!\nWas it? Yes, e.g. when fed. Dr. Smith agreed. "
        "J. R. Tolkien wrote 3 books."
    )
    assert split_sentences(text) == [
        "The cat sat.",
        "It was happy!",
        "Was it?",
        "Yes, e.g. when fed.",
        "Dr. Smith agreed.",
        "J. R. Tolkien wrote 3 books.",
    ]


def test_split_sentences_one_per_line_and_empty() -> None:
    assert split_sentences("First line here.\nSecond line here.\n") == [
        "First line here.",
        "Second line here.",
    ]
    assert split_sentences("  \n\t ") == []
    assert split_sentences("no final stop") == ["no final stop"]


# ---------------------------------------------------------------------------- your own text


def test_read_text_file_documents_by_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes("\ufeffOne. Two.\r\nThree.\r\n\r\n  \r\nFour is here.\nFive.\n\n\n".encode())
    corpus = read_text_corpus(path)
    assert corpus.name == "corpus.txt"
    assert corpus.documents == (("One.", "Two.", "Three."), ("Four is here.", "Five."))
    assert (corpus.num_documents, corpus.num_sentences) == (2, 5)
    assert corpus.num_characters == sum(len(s) for d in corpus.documents for s in d)
    assert corpus.text() == "One.\nTwo.\nThree.\n\nFour is here.\nFive."


def test_read_folder_one_document_per_file_sorted(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Bee one. Bee two.")
    # blank lines inside a file: still one document
    (tmp_path / "a.txt").write_text("Ay one.\n\nAy two.")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "notes.md").write_text("Ignored. Not a txt file.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("Sea one.")
    corpus = read_text_corpus(tmp_path)
    assert corpus.documents == (("Ay one.", "Ay two."), ("Bee one.", "Bee two."), ("Sea one.",))


def missing(folder: Path) -> Path:
    return folder / "missing.txt"


def whitespace_only(folder: Path) -> Path:
    (folder / "blank.txt").write_text(" \n\n\t\n")
    return folder / "blank.txt"


def folder_without_txt(folder: Path) -> Path:
    (folder / "dir").mkdir()
    (folder / "dir" / "notes.md").write_text("Not a txt file.")
    return folder / "dir"


def folder_of_empty_txt(folder: Path) -> Path:
    (folder / "dir").mkdir()
    (folder / "dir" / "x.txt").write_text("\n")
    return folder / "dir"


def not_utf8(folder: Path) -> Path:
    (folder / "latin.txt").write_bytes("caf\xe9 au lait.".encode("latin-1"))
    return folder / "latin.txt"


def binary(folder: Path) -> Path:
    (folder / "blob.txt").write_bytes(b"PK\x03\x04\x00\x00binary")
    return folder / "blob.txt"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (missing, ["missing.txt", "does not exist", "--data"]),
        (whitespace_only, ["blank.txt", "no text"]),
        (folder_without_txt, ["dir", "no .txt files", "one document per .txt file"]),
        (folder_of_empty_txt, ["dir", "no text"]),
        (not_utf8, ["latin.txt", "not UTF-8", "offset 3", "iconv"]),
        (binary, ["blob.txt", "binary", "NUL bytes"]),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_bad_input_errors_name_file_and_fix(tmp_path: Path, fresh_cache: Path, make, words) -> None:
    path = make(tmp_path)
    with pytest.raises(CorpusError) as caught:
        load_corpus(str(path))
    message = str(caught.value)
    for word in words:
        assert word in message
    assert files_under(fresh_cache) == []  # nothing half-written anywhere


def test_unknown_corpus_name_lists_valid_names(fresh_cache: Path) -> None:
    with pytest.raises(CorpusError, match="unknown corpus 'wikitext-3'") as caught:
        load_corpus("wikitext-3")
    for name in ["embedded", *DOWNLOADS]:
        assert name in str(caught.value)
    with pytest.raises(CorpusError, match="unknown corpus"):
        download_corpus("nope")


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABNOTES_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LABNOTES_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "labnotes"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "labnotes"


# ---------------------------------------------------------------------------- splits


def make_corpus(count: int) -> Corpus:
    return Corpus("toy", tuple((f"Document {i} begins.", f"It ends {i}.") for i in range(count)))


def test_split_is_deterministic_disjoint_and_order_independent() -> None:
    corpus = make_corpus(200)
    train, valid = split_corpus(corpus, 0.1)
    assert split_corpus(corpus, 0.1) == (train, valid)
    assert set(train.documents).isdisjoint(valid.documents)
    assert set(train.documents) | set(valid.documents) == set(corpus.documents)
    assert 5 <= valid.num_documents <= 40  # about 10% of 200
    shuffled = list(corpus.documents)
    random.Random(0).shuffle(shuffled)
    train2, valid2 = split_corpus(Corpus("toy", tuple(shuffled)), 0.1)
    assert set(train2.documents) == set(train.documents)
    assert set(valid2.documents) == set(valid.documents)
    # adding documents never moves existing ones
    _, valid_more = split_corpus(make_corpus(400), 0.1)
    assert set(valid.documents) <= set(valid_more.documents)


def test_split_small_corpora() -> None:
    for count in (2, 3, 5):
        train, valid = split_corpus(make_corpus(count), 0.1)
        assert train.num_documents >= 1 and valid.num_documents >= 1
    train, valid = split_corpus(make_corpus(3), 0.99)
    assert train.num_documents >= 1 and valid.num_documents >= 1
    with pytest.raises(CorpusError, match="at least 2"):
        split_corpus(make_corpus(1))
    with pytest.raises(ValueError):
        split_corpus(make_corpus(10), 1.0)


# ---------------------------------------------------------------------------- downloads


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        _Handler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(folder, base url) of an HTTP server on 127.0.0.1 serving that folder."""
    proxies = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    for variable in proxies:
        monkeypatch.delenv(variable, raising=False)
    folder = tmp_path / "served"
    folder.mkdir()
    _Handler.requests = []
    handler = functools.partial(_Handler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def serve(folder: Path, name: str, payload: bytes) -> str:
    (folder / name).write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def test_download_verifies_caches_and_reuses(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = server
    payload = b"First story. It is short.\n\nSecond story. Also short.\n"
    digest = serve(folder, "tiny.txt", payload)
    spec = DownloadSpec("tiny", f"{url}/tiny.txt", "tiny.txt", digest, len(payload))
    monkeypatch.setitem(DOWNLOADS, "tiny", spec)
    path = download_corpus("tiny", cache=tmp_path / "cache")
    assert path == tmp_path / "cache" / "downloads" / "tiny.txt"
    assert path.read_bytes() == payload
    assert download_corpus("tiny", cache=tmp_path / "cache") == path
    assert _Handler.requests == ["/tiny.txt"]  # the second call used the cached file
    assert files_under(tmp_path / "cache") == [path]  # no temporary files left


def test_checksum_mismatch_keeps_no_file(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = server
    serve(folder, "wikitext-2-raw-v1.zip", b"not the real archive")
    got = hashlib.sha256(b"not the real archive").hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError) as caught:  # the real entry, pointed at a local impostor
        download_corpus("wikitext-2", cache=cache, url=f"{url}/wikitext-2-raw-v1.zip")
    message = str(caught.value)
    assert "checksum mismatch" in message and "wikitext-2" in message
    assert DOWNLOADS["wikitext-2"].sha256 in message and got in message
    assert "deleted" in message and "Try again" in message
    assert files_under(cache) == []


def test_download_http_error_keeps_no_file(server, tmp_path: Path) -> None:
    _, url = server
    with pytest.raises(CorpusError, match="could not download corpus 'wikitext-2'.*--data PATH"):
        download_corpus("wikitext-2", cache=tmp_path / "cache", url=f"{url}/missing.zip")
    assert files_under(tmp_path / "cache") == []


def test_unverified_download_needs_opt_in(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder, url = server
    digest = serve(folder, "s.txt", b"A story. The end.")
    spec = DownloadSpec("free", f"{url}/s.txt", "s.txt", None, None)
    monkeypatch.setitem(DOWNLOADS, "free", spec)
    monkeypatch.delenv("LABNOTES_ALLOW_UNVERIFIED", raising=False)
    with pytest.raises(CorpusError, match="no recorded SHA-256.*LABNOTES_ALLOW_UNVERIFIED=1"):
        download_corpus("free", cache=tmp_path / "cache")
    assert _Handler.requests == [] and files_under(tmp_path / "cache") == []
    monkeypatch.setenv("LABNOTES_ALLOW_UNVERIFIED", "1")
    assert download_corpus("free", cache=tmp_path / "cache").read_bytes() == b"A story. The end."
    assert digest in capsys.readouterr().err


def test_load_named_downloads_in_each_format(
    server, fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = server
    wiki = (
        " \n = Cats = \n \n Cats are small . They purr @-@ loudly , often .\n \n"
        " = = Diet = = \n \n They eat 1 @,@ 000 mice .\n"
        " = Dogs = \n \n Dogs bark . They run 2 @.@ 5 km .\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("wiki/wiki.train.raw", wiki)
    specs = {
        "wiki": ("wiki.zip", buffer.getvalue(),
                 dict(member="wiki/wiki.train.raw", format="wikitext")),
        "stories": ("s.txt.gz",
                    gzip.compress(b"Tom ran. He fell.\n<|endoftext|>\nAmy sang. She won.\n"),
                    dict(format="endoftext")),
    }
    for name, (filename, payload, extra) in specs.items():
        digest = serve(folder, filename, payload)
        spec = DownloadSpec(name, f"{url}/{filename}", filename, digest, None, **extra)
        monkeypatch.setitem(DOWNLOADS, name, spec)
    assert load_corpus("wiki").documents == (
        ("Cats are small.", "They purr-loudly, often.", "They eat 1,000 mice."),
        ("Dogs bark.", "They run 2.5 km."),
    )
    assert load_corpus("stories").documents == (("Tom ran.", "He fell."), ("Amy sang.", "She won."))
    assert load_corpus("stories").name == "stories"  # second load: from the parsed-corpus cache
    assert len(_Handler.requests) == 2


def test_download_specs_are_complete() -> None:
    assert {"wikitext-103", "tinystories"} <= set(DOWNLOADS)
    for name, spec in DOWNLOADS.items():
        assert spec.name == name and spec.url.startswith("https://")
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)


# ---------------------------------------------------------------------------- embedded corpus

CODE_LIKE = re.compile(
    r"^\s*(>>>|\.\.\.|def |class \w+[(:]|import \w|from [\w.]+ import |return \w|@\w)"
    r"|^\s*[\w.\[\]]+\s*[+\-*/]?=[^=]|;\s*$|\w\(.*\)\s*:$|==|^\s*\.\. \w[\w-]*::|^\s*:\w+( \w+)?:"
    r"|^\s*[|+][-=+|]|-{4,}|={4,}|\t|  "
)


@pytest.fixture(scope="module")
def embedded() -> Corpus:
    return embedded_corpus()


def test_embedded_corpus_is_prose_and_large(embedded: Corpus) -> None:
    assert embedded.name == "embedded"
    assert embedded.num_characters >= 1_000_000
    assert embedded.num_documents >= 1000
    assert len(set(embedded.documents)) == embedded.num_documents  # de-duplicated
    for document in embedded.documents:
        assert len(document) >= 2 and sum(map(len, document)) >= data.MIN_DOCUMENT_CHARACTERS
        for sentence in document:
            assert sentence and sentence == " ".join(sentence.split())
            assert ">>>" not in sentence and not CODE_LIKE.search(sentence), sentence


def test_embedded_corpus_is_cached_atomically(embedded: Corpus) -> None:
    files = files_under(cache_dir() / "corpora")
    assert [path.name for path in files if path.name.startswith("embedded-")] == [
        f"embedded-v{data.CORPUS_FORMAT_VERSION}-python{platform.python_version()}"
        f"-torch{torch.__version__}.json"
    ]
    assert not [path for path in files if path.name.endswith(".tmp")]
    assert embedded_corpus() == embedded  # read back from the cache file


def test_embedded_builder_is_deterministic() -> None:
    files = embedded_source_files()
    assert files == embedded_source_files()
    assert not any(part in ("test", "tests") for path in files for part in path.parts)
    subset = files[:: max(1, len(files) // 60)]
    first = build_embedded_corpus(subset)
    assert first.num_documents > 10
    assert build_embedded_corpus(subset) == first
    assert build_embedded_corpus(subset, help_topics=False).num_documents < first.num_documents


def test_cleaning_keeps_prose_and_drops_code() -> None:
    docstring = '''Compute the weighted sum of the inputs. It is used by :class:`~torch.nn.Linear`
    and by ``other`` layers.

    Args:
        x (Tensor): the input. This is a field.

    .. note::
        A directive body.

    Example::

        >>> y = f(x)
        ... print(y)

    =====  =====
    col a  col b
    =====  =====

    :param x: a field list entry.
    Call f(x) to compute it. Set x = 3 for speed. The result is **always** finite!
    '''
    assert data.prose_sentences(docstring) == [
        "Compute the weighted sum of the inputs.",
        "It is used by Linear and by other layers.",
    ]
    text = data.prose_sentences("Use *this* tool with `great` care. It keeps the :math:`x` value!")
    assert text == ["Use this tool with great care.", "It keeps the x value!"]


def test_docstrings_are_read_without_running_code(tmp_path: Path) -> None:
    source = (
        '"""Module doc. Second sentence."""\n'
        'raise SystemExit("must not run")\n'
        'class A:\n    """Class doc."""\n    def f(self):\n        """Method doc."""\n'
        'if True:\n    def g():\n        """Nested doc."""\n'
    )
    assert data.docstrings(source) == [
        "Module doc. Second sentence.",
        "Class doc.",
        "Method doc.",
        "Nested doc.",
    ]
    assert data.docstrings("def broken(:\n") == []


# ---------------------------------------------------------------------------- block packing

sentence_shapes = st.lists(st.integers(1, 5), max_size=10)  # word lengths of one sentence
document_shapes = st.lists(sentence_shapes, max_size=6)


def encode_shapes(shapes: list[list[list[int]]]):
    """Documents with unique token ids; key[token] = (document, sentence, word)."""
    next_token, documents, key = 10, [], {}
    for d, document in enumerate(shapes):
        encoded = []
        for s, sentence in enumerate(document):
            tokens, words = [], []
            for w, length in enumerate(sentence):
                for _ in range(length):
                    tokens.append(next_token)
                    words.append(w)
                    key[next_token] = (d, s, w)
                    next_token += 1
            encoded.append((tokens, words))
        documents.append(encoded)
    return documents, key


def check_block_layout(blocks, seq_len: int, key: dict) -> list[list[int]]:
    """Layout invariants of every block; returns the real tokens of each block."""
    ids, words, special = blocks.input_ids, blocks.word_ids, blocks.special_tokens_mask
    assert ids.dtype == words.dtype == torch.long and special.dtype == torch.bool
    assert ids.shape == words.shape == special.shape and ids.shape[1] == seq_len
    assert torch.equal(special, words == -1)
    real_tokens = []
    for row, row_words in zip(ids.tolist(), words.tolist()):
        real = seq_len - 2 - row.count(PAD) if PAD in row else seq_len - 2
        assert real >= 1 and row[0] == CLS and row[real + 1] == SEP
        assert row.count(CLS) == 1 and row.count(SEP) == 1
        assert all(token == PAD for token in row[real + 2 :])
        assert all(word == -1 for word in row_words[:1] + row_words[real + 1 :])
        block_words, tokens = row_words[1 : real + 1], row[1 : real + 1]
        assert block_words[0] == 0
        assert all(b - a in (0, 1) for a, b in zip(block_words, block_words[1:]))
        for (t1, w1), (t2, w2) in zip(zip(tokens, block_words), zip(tokens[1:], block_words[1:])):
            assert (w1 == w2) == (key[t1] == key[t2])  # same block word id <=> same input word
        assert len({key[token][0] for token in tokens}) == 1  # one document per block
        real_tokens.append(tokens)
    return real_tokens


@settings(max_examples=150, deadline=None)
@given(st.lists(document_shapes, max_size=5), st.integers(3, 24))
def test_pack_blocks_keeps_every_token_once_in_order(shapes, seq_len: int) -> None:
    documents, key = encode_shapes(shapes)
    blocks = pack_blocks(documents, seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD, min_blocks=0,
                         min_block_tokens=0)
    real_tokens = check_block_layout(blocks, seq_len, key)
    every_token = [t for d in documents for s in d for t in s[0]]
    assert [t for tokens in real_tokens for t in tokens] == every_token
    room = seq_len - 2
    block_of = {token: b for b, tokens in enumerate(real_tokens) for token in tokens}
    for document in documents:
        for tokens, _ in document:
            if 0 < len(tokens) <= room:  # a sentence that fits a block is never cut
                assert len({block_of[token] for token in tokens}) == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(document_shapes, max_size=5), st.integers(3, 24))
def test_pack_blocks_drops_short_tails_but_keeps_short_documents(shapes, seq_len: int) -> None:
    documents, key = encode_shapes(shapes)
    blocks = pack_blocks(documents, seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD, min_blocks=0)
    real_tokens = check_block_layout(blocks, seq_len, key)
    kept = [t for tokens in real_tokens for t in tokens]
    assert kept == sorted(kept)  # an in-order subsequence of the input tokens
    threshold = min(data.MIN_BLOCK_TOKENS, seq_len - 2)
    blocks_per_document = [sum(key[tokens[0]][0] == d for tokens in real_tokens)
                           for d in range(len(documents))]
    for d, document in enumerate(documents):
        assert (blocks_per_document[d] >= 1) == any(tokens for tokens, _ in document)
    for tokens in real_tokens:
        assert len(tokens) >= threshold or blocks_per_document[key[tokens[0]][0]] == 1


def test_pack_blocks_examples() -> None:
    documents = [
        [([10, 11, 12], [0, 0, 1]), ([13, 14], [0, 1])],  # fits one block of room 6
        [([20, 21, 22, 23, 24, 25, 26, 27], [0, 0, 0, 1, 1, 1, 1, 2])],  # longer than a block: cut
    ]
    blocks = pack_blocks(documents, 8, cls_id=CLS, sep_id=SEP, pad_id=PAD, min_block_tokens=1)
    assert blocks.input_ids.tolist() == [
        [CLS, 10, 11, 12, 13, 14, SEP, PAD],
        [CLS, 20, 21, 22, 23, 24, 25, SEP],
        [CLS, 26, 27, SEP, PAD, PAD, PAD, PAD],
    ]
    assert blocks.word_ids.tolist() == [
        [-1, 0, 0, 1, 2, 3, -1, -1],
        [-1, 0, 0, 0, 1, 1, 1, -1],
        [-1, 0, 1, -1, -1, -1, -1, -1],  # word 1 was cut by the block boundary: in both blocks
    ]
    assert len(blocks) == 3
    # with the default threshold the 2-token tail is dropped, but a short document keeps its block
    default = pack_blocks(documents + [[([30], [0])]], 8, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    assert default.input_ids[:, 1].tolist() == [10, 20, 30]
    empty = pack_blocks([], 8, cls_id=CLS, sep_id=SEP, pad_id=PAD, min_blocks=0)
    assert empty.input_ids.shape == (0, 8)


def test_pack_blocks_too_little_text() -> None:
    documents = [[([10, 11, 12], [0, 1, 2])], [([13], [0])]]
    with pytest.raises(CorpusError) as caught:
        pack_blocks(documents, 16, cls_id=CLS, sep_id=SEP, pad_id=PAD, min_blocks=5,
                    source="corpus 'toy'")
    message = str(caught.value)
    for words in ("too little text", "corpus 'toy'", "seq_len=16", "2 block(s)", "at least 5",
                  "--data"):
        assert words in message
    with pytest.raises(ValueError):
        pack_blocks(documents, 2, cls_id=CLS, sep_id=SEP, pad_id=PAD)


@settings(max_examples=100, deadline=None)
@given(st.lists(document_shapes, max_size=5), st.integers(3, 24))
def test_pack_blocks_across_documents(shapes, seq_len: int) -> None:
    """FULL-SENTENCES packing: every token once, in order; a [SEP] (special, word -1) between
    documents."""
    documents, key = encode_shapes(shapes)
    blocks = pack_blocks(documents, seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD, min_blocks=0,
                         min_block_tokens=0, across_documents=True)
    ids, words, special = blocks.input_ids, blocks.word_ids, blocks.special_tokens_mask
    assert torch.equal(special, words == -1) and ids.shape[1:] == (seq_len,)
    stream = []
    for row, row_words in zip(ids.tolist(), words.tolist()):
        assert row[0] == CLS and row[1] != SEP, "a separator never opens a block"
        body = [(t, w) for t, w in zip(row[1:], row_words[1:]) if t != PAD]
        assert body[-1][0] == SEP  # the block's own closing [SEP]
        real_words = [w for t, w in body[:-1] if t != SEP]
        assert all(b - a in (0, 1) for a, b in zip(real_words, real_words[1:]))
        assert all(w == -1 for t, w in body if t == SEP)
        stream += [t for t, _ in body[:-1]]
    real = [t for t in stream if t != SEP]
    assert real == [t for d in documents for s in d for t in s[0]]
    # a [SEP] inside a block always sits between tokens of two different documents
    for before, sep, after in zip(stream, stream[1:], stream[2:]):
        if sep == SEP and before != SEP and after != SEP:
            assert key[before][0] < key[after][0]


def test_held_out_sentences_never_occur_in_training():
    boilerplate = "Default value is none."
    documents = tuple((f"Document {i} starts here.", boilerplate, f"It goes on {i}.",
                       f"It ends with number {i}.") for i in range(300))
    train, valid = split_corpus(Corpus("boilerplate", documents), 0.2)
    seen = {sentence for document in train.documents for sentence in document}
    assert valid.num_documents > 0
    assert not any(sentence in seen for document in valid.documents for sentence in document)
    # the longest unseen stretch of each document: what follows the shared sentence
    assert all(document[0].startswith("It goes on") and len(document) == 2
               for document in valid.documents)
    with pytest.raises(CorpusError, match="nothing is held out"):
        split_corpus(Corpus("same", tuple(("One.", "Two.") for _ in range(20))), 0.2)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=8), min_size=1, max_size=12),
       st.sets(st.integers(0, 12)))
def test_unseen_stretches_are_the_longest_real_runs(documents, seen):
    from labnotes.data import unseen_stretches

    kept = unseen_stretches(documents, seen)
    runs_of = [[tuple(document[i:j]) for i in range(len(document))
                for j in range(i + 1, len(document) + 1) if not set(document[i:j]) & seen]
               for document in documents]
    expected = [max(runs, key=len) for runs in runs_of if runs]  # max keeps the first longest
    assert list(kept) == expected


def test_embedded_corpus_validation_shares_no_sentence_with_training():
    train, valid = split_corpus(embedded_corpus(), 0.1)
    seen = {sentence for document in train.documents for sentence in document}
    assert not [s for document in valid.documents for s in document if s in seen]
    assert valid.num_documents == 679 and valid.num_sentences == 2060
