"""A downstream benchmark in miniature.

GLUE is not available offline, so we build a small one from held-out documents of any corpus:
is this sentence in its real word order, which part of the corpus does it come from, does this
sentence belong to the document this opening line begins. Every pretrained encoder on this site
is judged by it.

"""

# %% [markdown]
# Pretraining objectives are compared by what their encoders do *afterwards*. The papers on
# this site report GLUE (Wang et al., 2018, arXiv:1804.07461): nine English tasks, scored after
# fine-tuning the whole encoder on each, averaged into one number (ELECTRA, arXiv:2003.10555,
# Tables 1 and 5; BERT, arXiv:1810.04805, Table 1). GLUE must be downloaded and its tasks need
# far more than a CPU minute, so this page builds a **GLUE in miniature** from text we already
# have: the **validation** documents of the run's own corpus, which no pretraining step saw
# (the [data page](data.md) holds them out by a hash of their content).
#
# Three tasks, of three kinds, in the spirit of GLUE's:
#
# - **word order**: a real sentence, or the same words in a random order?
# - **source**: which part of the corpus does this sentence come from?
# - **summary match**: does this sentence belong to the document whose opening line is shown
#   (on the embedded corpus: is it from the docstring this summary line begins)?
#
# | task | kind | GLUE cousin | chance | a bag of words can solve it |
# |---|---|---|---|---|
# | word order | single sentence, syntax | CoLA | 50% | no (same words) |
# | source | single sentence, topic | none (topic classification) | 33% | largely |
# | summary match | sentence pair | MRPC / QQP | 50% | partly (shared words) |
#
# A task earns its place only if it **tells encoders apart**: an encoder pretrained with MLM must
# beat a randomly initialised one of the same shape by more than the spread of seeds (summary
# match passes most narrowly, by about twice its spread; the numbers below say so). Each task
# is reported beside a random-init encoder and a **bag of words** (a linear classifier on token
# counts), so that a reader sees what it measures; the numbers are in [What each task
# measures](#what-each-task-measures). (The suite's first version had two tasks that failed this
# test; they are kept, under `FIRST_SUITE`, so that
# [What each task measures](#what-each-task-measures) can show why they were replaced.)
#
# Each is scored by **fine-tuning** a copy of the encoder for a fixed, small budget, or, with
# a switch, by a **frozen-feature probe** (a linear classifier on the encoder's unchanged
# features). Every score is the mean and spread over three seeds. The default budget runs the
# whole suite on one checkpoint in well under a minute on a 2-core CPU.

# %%
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labnotes.tokenizer import CLS_ID, PAD_ID, SEP_ID, CorpusConfig, prepare_corpus
from labnotes.training import QUICK, QUICK_EVAL_EXAMPLES

# %% [markdown]
# ## Configuration
#
# `mode` is the switch between fine-tuning and probing. The fine-tuning budget (`steps` of
# `batch_size` examples) is deliberately small: 60 steps of 32 examples, about two passes over
# a task's training examples. That is far from GLUE's three epochs at convergence, but it is
# what lets the suite score many checkpoints, and an encoder that has learned something useful
# shows it quickly. `max_tokens` caps every example (a pair counts both sentences). `tasks`
# names the tasks to build: the three of this page by default, `FIRST_SUITE` for the first
# version's.

# %%
@dataclass
class DownstreamConfig:
    mode: str = "finetune"  # finetune | probe
    seeds: int = 3
    steps: int = 60  # fine-tuning steps per task and seed
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int = 6
    probe_epochs: int = 30
    probe_lr: float = 1e-2
    max_tokens: int = 48
    max_train_examples: int = 900  # per task, balanced over labels
    max_test_examples: int = 900
    tasks: tuple[str, ...] = ("word_order", "source", "summary_match")
    shuffle_window: int = 4  # acceptability (first suite): words shuffled together
    num_sources: int = 3  # source: contiguous parts of the corpus
    data_seed: int = 0  # fixes every example; the run seeds only change training

    def __post_init__(self) -> None:
        if self.mode not in ("finetune", "probe"):
            raise ValueError(f"mode must be finetune or probe, got {self.mode!r}")
        self.tasks = tuple(self.tasks)  # a list from JSON becomes the tuple it was
        unknown = [name for name in self.tasks if name not in TASK_BUILDERS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown downstream task(s) {unknown or self.tasks}; the tasks are "
                             f"{', '.join(TASK_BUILDERS)}")


FIRST_SUITE = ("acceptability", "source", "same_passage")  # the suite before 2026-12-05


def quick_suite(config: DownstreamConfig) -> DownstreamConfig:
    """The training page's quick mode for the suite: a few steps on a few examples, one seed; a
    check that the suite runs, never a score."""
    return dataclasses.replace(config, steps=5, seeds=1,
                               max_train_examples=QUICK_EVAL_EXAMPLES,
                               max_test_examples=QUICK_EVAL_EXAMPLES)


# %% [markdown]
# ## Held-out documents, split in two
#
# The suite reads the validation documents (sentences of token ids with word ids, as the tokenizer
# produced them) and splits them **by document** into a training half and a test half: even-numbered
# documents train, odd-numbered ones test. No document is on both sides, and a test document that
# repeats any sentence of a training document word for word is left out, so a classifier cannot
# score by remembering wording. (Before the [data page](data.md) kept only unseen text in
# validation, 21 of the 1,121 test-half sentences were such repeats; now 5 of 1,061 are, in 5 of the
# 339 test documents, which are left out.) The split, and every random choice below, depends only on
# `data_seed`; the three seeds of a score change only how the classifier is trained.

# %%
Sentence = tuple[list[int], list[int]]  # (token ids, word ids local to the sentence)


def split_documents(documents: list[list[Sentence]]) -> tuple[list[int], list[int]]:
    """Indices of the (train, test) documents: even and odd positions, less any test document
    that shares a sentence (the same token ids) with a training document."""
    train = list(range(0, len(documents), 2))
    seen = {tuple(ids) for d in train for ids, _ in documents[d]}
    test = [d for d in range(1, len(documents), 2)
            if not any(tuple(ids) in seen for ids, _ in documents[d])]
    return train, test


# %% [markdown]
# ## Task 1: word order
#
# CoLA (Warstadt et al., arXiv:1805.12471) asks whether a sentence is grammatical English. We
# make the ungrammatical ones ourselves: the sentence's **words** put in a random order (a word
# keeps its WordPiece pieces together), making sure the token sequence really changed. Half of
# the sentences are shown as they are (label 1), the other half shuffled (label 0); a sentence
# appears once, in one form, and has at least `MIN_WORDS` = 3 words.
#
# The shuffled sentence has exactly the same words, so no bag of words can tell the two apart:
# only a model of **word order** can. A randomly initialised encoder sits at 50% here; an
# encoder pretrained with MLM does not (64% after 600 steps, [below](#what-each-task-measures)).
#
# Why the whole sentence: the suite's first version shuffled only 4 neighbouring words, the way
# CoLA's errors are local. At this site's scale that was at chance for *every* encoder, the trained
# ones included ([below](#what-each-task-measures)), so it measured nothing. A whole shuffle is
# easier, and it separates an encoder that has learned which words follow which from one that has
# not.

# %%
MIN_WORDS = 3


def shuffle_words(sentence: Sentence, window: int, rng: random.Random) -> list[int] | None:
    """The sentence with `window` neighbouring words permuted, or None if that is impossible."""
    tokens, words = sentence
    grouped: list[list[int]] = []
    previous = None
    for token, word in zip(tokens, words):
        if grouped and word == previous:
            grouped[-1].append(token)
        else:
            grouped.append([token])
        previous = word
    if len(grouped) < window:
        return None
    for _ in range(10):
        start = rng.randrange(len(grouped) - window + 1)
        order = rng.sample(range(window), window)
        shuffled = grouped[:start] + [grouped[start + i] for i in order] + grouped[start + window:]
        flat = [token for word in shuffled for token in word]
        if flat != list(tokens):
            return flat
    return None


def word_order_examples(documents: list[list[Sentence]], indices: list[int],
                        config: DownstreamConfig, rng: random.Random) -> list[dict[str, Any]]:
    room = config.max_tokens - 2
    sentences = [((tokens[:room], words[:room]), d)
                 for d in indices for tokens, words in documents[d]]
    sentences = [(s, d) for s, d in sentences if len({*s[1]}) >= MIN_WORDS]
    rng.shuffle(sentences)
    examples = []
    for position, (sentence, document) in enumerate(sentences):
        if position % 2 == 0:
            examples.append(single(sentence[0], 1, document))
        elif (shuffled := shuffle_words(sentence, len({*sentence[1]}), rng)) is not None:
            examples.append(single(shuffled, 0, document))
    return examples



def single(tokens: list[int], label: int, document: int) -> dict[str, Any]:
    return {"ids": [CLS_ID, *tokens, SEP_ID], "segments": [0] * (len(tokens) + 2), "label": label,
            "document": document}


# %% [markdown]
# ## Task 2: source
#
# Which collection did this sentence come from? A corpus does not say where its documents come
# from, but most corpora keep them in an order that does: the embedded corpus lists Python's
# help topics, then the standard library's docstrings and then PyTorch's, each in file-path
# order (see the [data page](data.md)); a folder of `.txt` files is read in name order. So we
# cut the validation documents, in corpus order, into `num_sources` = 3 contiguous parts of
# equal size and ask which part a sentence came from. On the embedded corpus the first third
# is roughly the help topics and the standard library up to `urllib`, the second the rest of
# the standard library and PyTorch's internal packages, the third the rest of PyTorch: module
# families. (On a corpus whose order means nothing, such as shuffled Wikipedia articles, this
# task is at chance for every model, and says so.)
#
# Unlike word order, this task *can* be solved from words alone (a sentence about tensors is
# not from the standard library), so it measures how quickly the encoder's features separate
# topics, not syntax.

# %%
def source_examples(documents: list[list[Sentence]], indices: list[int], config: DownstreamConfig,
                    rng: random.Random) -> list[dict[str, Any]]:
    room = config.max_tokens - 2
    examples = []
    for d in indices:
        label = d * config.num_sources // len(documents)  # which contiguous part of the corpus
        examples += [single(tokens[:room], label, d) for tokens, _ in documents[d]]
    return examples


# %% [markdown]
# ## Task 3: summary match
#
# A docstring opens with a one-line summary and goes on with its details. Given a document's
# **first sentence** A and a later sentence B, does B belong to the same document (label 1),
# or to another document from the same part of the corpus (label 0; the parts of the source
# task, so that the right answer is not just "same topic family")? It is the kind of judgement
# MRPC and QQP ask for, two texts that go together or not, built from the structure a docstring
# has. One example per later sentence of each document of at least two sentences, a coin
# deciding its label: a positive's B is that sentence, a negative's B is drawn uniformly from
# the later sentences of the part's other documents. Both labels then draw B almost the same
# way, one sentence among all later sentences, so where B sits in its document, or how long
# that document is, says next to nothing about the label (a test checks this on documents of
# very unequal length). Not exactly nothing: a negative never takes B from A's own document,
# which matters only when one document is a large share of its part; each part here has at
# least 95 documents, and the best rule on B's document length scores 50.3%. A part with a
# single document would draw its negatives from the other parts (never the case here). Each
# sentence is cut to half of `max_tokens`.
#
# A and B are encoded **separately**, and the classifier reads their two mean vectors $u, v$
# as $[u;\ v;\ |u - v|;\ u \odot v]$ (Sentence-BERT's classification head, Reimers and
# Gurevych, arXiv:1908.10084, §3). The first suite fed pairs to the encoder together,
# `[CLS] A [SEP] B [SEP]`, as BERT does for GLUE's pairs; at this suite's budget no encoder
# learned to compare the two halves that way (the comparison's MLM runs were at chance on this
# task fed as one input, like random init, in a trial made while the suite was built), while the separate encoding lets whatever the encoder knows about each sentence's content
# be compared directly. A bag of words gets the same head on token counts,
# where $u \odot v$ counts shared words, so it has a real floor here: lexical overlap.

# %%
def summary_match_examples(documents: list[list[Sentence]], indices: list[int],
                           config: DownstreamConfig, rng: random.Random) -> list[dict[str, Any]]:
    room = (config.max_tokens - 2) // 2
    part = {d: d * config.num_sources // len(documents) for d in indices}  # as the source task
    long_enough = [d for d in indices if len(documents[d]) >= 2]
    later: dict[int, list[tuple[int, int]]] = {}  # each part's later sentences: (document, i)
    for d in long_enough:
        later.setdefault(part[d], []).extend((d, i) for i in range(1, len(documents[d])))
    examples = []
    for d in long_enough:
        pool = later[part[d]]
        if all(o == d for o, _ in pool):  # a part of one document: any other part's
            pool = [(o, i) for sentences in later.values() for o, i in sentences if o != d]
        for i in range(1, len(documents[d])):
            if rng.random() < 0.5 or not pool:
                second, label = documents[d][i], 1
            else:
                other, j = rng.choice(pool)
                while other == d:  # uniform over the later sentences of other documents
                    other, j = rng.choice(pool)
                second, label = documents[other][j], 0
            examples.append(pair(documents[d][0][0][:room], second[0][:room], label, d))
    return examples


def pair(first: list[int], second: list[int], label: int, document: int) -> dict[str, Any]:
    """A pair example: each sentence as its own `[CLS] ... [SEP]` input."""
    return {**single(first, label, document), "second": [CLS_ID, *second, SEP_ID]}


# %% [markdown]
# ## The first suite's two tasks
#
# Until 2026-12-05 the suite had **acceptability** in place of word order (only
# `shuffle_window` = 4 neighbouring words permuted) and **same passage** in place of summary
# match (is B the sentence that follows A, or the second sentence of a random neighbouring
# pair from another document, so that B never opens a document on either side; the pair fed
# to the encoder as one input, B in segment 1 where the encoder has segment embeddings). On
# the embedded corpus both were near chance for every encoder: a random one, the default MLM
# run and every objective of the [comparison](experiments.compare.md). Every experiment page
# now reports the current suite; `tasks=FIRST_SUITE` builds the first one, which
# [What each task measures](#what-each-task-measures) scores beside it.

# %%
def acceptability_examples(documents: list[list[Sentence]], indices: list[int],
                           config: DownstreamConfig, rng: random.Random) -> list[dict[str, Any]]:
    room = config.max_tokens - 2
    sentences = [((tokens[:room], words[:room]), d)
                 for d in indices for tokens, words in documents[d]]
    sentences = [(s, d) for s, d in sentences if len({*s[1]}) >= config.shuffle_window]
    rng.shuffle(sentences)
    examples = []
    for position, (sentence, document) in enumerate(sentences):
        if position % 2 == 0:
            examples.append(single(sentence[0], 1, document))
        elif (shuffled := shuffle_words(sentence, config.shuffle_window, rng)) is not None:
            examples.append(single(shuffled, 0, document))
    return examples


def same_passage_examples(documents: list[list[Sentence]], indices: list[int],
                          config: DownstreamConfig, rng: random.Random) -> list[dict[str, Any]]:
    room = (config.max_tokens - 3) // 2
    pairs = [(d, i) for d in indices for i in range(len(documents[d]) - 1)]
    rng.shuffle(pairs)
    several_documents = len({d for d, _ in pairs}) > 1
    examples = []
    for position, (d, i) in enumerate(pairs):
        first = documents[d][i][0][:room]
        if position % 2 == 0:
            second, label = documents[d][i + 1][0][:room], 1
        else:  # B of another pair, from another document: never a first sentence, as positives
            other, j = rng.choice(pairs)
            while other == d and several_documents:
                other, j = rng.choice(pairs)
            second, label = documents[other][j + 1][0][:room], 0
        examples.append({"ids": [CLS_ID, *first, SEP_ID, *second, SEP_ID],
                         "segments": [0] * (len(first) + 2) + [1] * (len(second) + 1),
                         "label": label, "document": d})
    return examples


# %% [markdown]
# ## Balanced labels, padded tensors
#
# Every task keeps the **same number of examples of each label** (the smallest label's count,
# capped by `max_*_examples`), so accuracy is easy to read: chance is $1/K$ for $K$ labels,
# and a classifier that always answers the majority label gains nothing. Examples are padded
# with `[PAD]` to the longest one; a pair task keeps its second sentences in `second_ids`.

# %%
@dataclass
class Examples:
    input_ids: Tensor  # [N, L] long, [PAD]-padded
    segment_ids: Tensor  # [N, L] long
    labels: Tensor  # [N] long
    documents: Tensor  # [N] long: index of the validation document each example came from
    second_ids: Tensor | None = None  # [N, L2]: a pair task's second sentences, else None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ClassificationTask:
    name: str
    num_labels: int
    train: Examples
    test: Examples

    @property
    def pair(self) -> bool:
        return self.train.second_ids is not None


def balanced(examples: list[dict[str, Any]], num_labels: int, cap: int,
             rng: random.Random) -> list[dict[str, Any]]:
    by_label = [[e for e in examples if e["label"] == k] for k in range(num_labels)]
    each = min(min(len(group) for group in by_label), cap // num_labels)
    chosen = [e for group in by_label for e in rng.sample(group, each)]
    rng.shuffle(chosen)
    return chosen


def to_tensors(examples: list[dict[str, Any]]) -> Examples:
    ids = padded([e["ids"] for e in examples])
    segments = torch.zeros_like(ids)
    for row, example in enumerate(examples):
        segments[row, : len(example["segments"])] = torch.tensor(example["segments"])
    second = None
    if examples and "second" in examples[0]:  # a pair task
        second = padded([e["second"] for e in examples])
    return Examples(ids, segments, torch.tensor([e["label"] for e in examples], dtype=torch.long),
                    torch.tensor([e["document"] for e in examples], dtype=torch.long), second)


def padded(rows: list[list[int]]) -> Tensor:
    ids = torch.full((len(rows), max((len(r) for r in rows), default=1)), PAD_ID, dtype=torch.long)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


TASK_BUILDERS = {"word_order": (word_order_examples, 2), "source": (source_examples, None),
                 "summary_match": (summary_match_examples, 2),
                 "acceptability": (acceptability_examples, 2),  # the first suite's
                 "same_passage": (same_passage_examples, 2)}  # the first suite's


def build_tasks(prepared: Any, config: DownstreamConfig | None = None,
                max_len: int | None = None) -> dict[str, ClassificationTask]:
    """The suite's tasks from a prepared corpus (labnotes.tokenizer.prepare_corpus)."""
    config = config or DownstreamConfig()
    if max_len is not None and max_len < config.max_tokens:
        config = dataclasses.replace(config, max_tokens=max_len)
    documents = [list(document) for document in prepared.valid_documents]
    if len(documents) < 4:
        raise ValueError(f"the downstream suite needs at least 4 validation documents, this "
                         f"corpus has {len(documents)}; use a larger corpus or a larger "
                         f"corpus.valid_fraction")
    train_indices, test_indices = split_documents(documents)
    tasks = {}
    for name in config.tasks:
        build, num_labels = TASK_BUILDERS[name]
        num_labels = num_labels or config.num_sources
        rng = random.Random(f"{config.data_seed}/{name}")
        parts = []
        halves = ((train_indices, config.max_train_examples),
                  (test_indices, config.max_test_examples))
        for indices, cap in halves:
            chosen = balanced(build(documents, indices, config, rng), num_labels, cap, rng)
            if not chosen:
                raise ValueError(f"the downstream task {name!r} got no examples from this corpus's "
                                 f"{len(documents)} validation documents; use a larger corpus")
            parts.append(to_tensors(chosen))
        tasks[name] = ClassificationTask(name, num_labels, *parts)
    return tasks


# %% [markdown]
# ## The classifier: mean of the encoder's outputs, one linear layer
#
# GLUE fine-tuning in BERT and ELECTRA reads the `[CLS]` vector. We **average the encoder's
# outputs over the real tokens** instead. The reason is fairness between objectives: an MLM
# never takes a loss at `[CLS]` (it is never masked), ELECTRA's discriminator does (it grades
# every non-pad token), so with a short fine-tuning budget a `[CLS]` classifier would partly
# measure whether the pretraining loss happened to touch one position. The mean reads every
# position, and every objective trains every position's vector.
#
# $$u = \frac{1}{|R|} \sum_{t \in R} h_t, \qquad \hat{y} = W u + b.$$
#
# For a pair task each sentence gets its own mean, $u$ and $v$, and the linear layer reads
# $[u;\ v;\ |u - v|;\ u \odot v]$, four times as wide (Task 3).

# %%
class SequenceClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_labels: int, pair: bool = False,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.config.dim * (4 if pair else 1), num_labels)

    def forward(self, input_ids: Tensor, segment_ids: Tensor,
                second_ids: Tensor | None = None) -> Tensor:
        return self.out(self.dropout(example_features(self.encoder, input_ids, segment_ids,
                                                      second_ids)))


def example_features(encoder: nn.Module, input_ids: Tensor, segment_ids: Tensor,
                     second_ids: Tensor | None = None) -> Tensor:
    """The mean vector of one sentence, or the pair features of two encoded apart."""
    first = pooled_features(encoder, input_ids, segment_ids)
    if second_ids is None:
        return first
    return pair_features(first, pooled_features(encoder, second_ids, torch.zeros_like(second_ids)))


def pair_features(u: Tensor, v: Tensor) -> Tensor:
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)  # [B, 4D]


def pooled_features(encoder: nn.Module, input_ids: Tensor, segment_ids: Tensor) -> Tensor:
    real = input_ids != PAD_ID  # [B, L]
    segments = segment_ids if encoder.config.num_segments else None
    hidden = encoder(input_ids, padding_mask=real, segment_ids=segments)  # [B, L, D]
    return (hidden * real.unsqueeze(-1)).sum(1) / real.sum(1, keepdim=True)  # [B, D]


def batch_of(examples: Examples, rows: Tensor,
             device: torch.device) -> tuple[tuple[Tensor, Tensor, Tensor | None], Tensor]:
    """((input ids, segment ids, second ids or None), labels) of `rows`, padding trimmed."""
    ids = examples.input_ids[rows]
    length = int((ids != PAD_ID).sum(1).max())  # trim the padding nobody needs
    second = None
    if examples.second_ids is not None:
        second = examples.second_ids[rows]
        second = second[:, : int((second != PAD_ID).sum(1).max())].to(device)
    return ((ids[:, :length].to(device), examples.segment_ids[rows, :length].to(device), second),
            examples.labels[rows].to(device))


# %% [markdown]
# ## Fine-tuning, and the frozen probe
#
# **Fine-tuning** trains a copy of the encoder together with the new linear layer: AdamW,
# the learning rate warmed up for a few steps and then decayed linearly to zero (BERT's
# fine-tuning recipe, arXiv:1810.04805, §4 and App. A.3, at a much smaller budget), dropout on,
# gradient norm clipped to 1. The original encoder is never modified. One departure from that
# recipe: our weight decay of 0.01 applies to every parameter, biases and LayerNorm scales and
# shifts included, where BERT's optimiser exempts them (`exclude_from_weight_decay` in
# google-research/bert `optimization.py`). We leave it so, since the stored scores on these
# pages were measured with it.
#
# The **probe** (`mode="probe"`) leaves the encoder frozen: the features of every example are
# computed once, standardised with the training examples' mean and spread, and a logistic
# regression is fit on them by minibatch AdamW. It measures what the pretrained features
# already say, not what they can quickly become; it is also much faster. A seed changes the
# classifier's initialisation and the order of the batches, and, when fine-tuning, the dropout
# (the probe has none). `fit`, the training loop, also takes a label per token, for the
# [token tasks](#fine-tuning-on-every-token) below; `IGNORE` marks a token without one.
#
# Both seed torch's global generators (which initialisation and dropout draw from) inside
# `seeded`, which hands the caller's random state back afterwards: the CPU's, and, once CUDA
# has started, every CUDA device's, since `torch.manual_seed` reseeds those too.

# %%
IGNORE = -100  # a token without a label (PyTorch's cross_entropy default, as on the MLM page)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generators seeded with `seed` inside; the caller's states restored after."""
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def fine_tune(encoder: nn.Module, task: ClassificationTask, seed: int, config: DownstreamConfig,
              device: torch.device) -> float:
    predicted = fine_tune_predictions(encoder, task, seed, config, device)
    return (predicted == task.test.labels).float().mean().item()


def fine_tune_predictions(encoder: nn.Module, task: ClassificationTask, seed: int,
                          config: DownstreamConfig, device: torch.device) -> Tensor:
    """The fine-tuned classifier's predicted label of every test example."""
    with seeded(seed):  # leave the caller's random state alone
        model = SequenceClassifier(copy.deepcopy(encoder), task.num_labels, task.pair).to(device)
        fit(model, task.train, seed, config, device)
        with torch.no_grad():
            order = by_length(task.test)
            parts = [model(*batch_of(task.test, rows, device)[0]).argmax(-1).cpu()
                     for rows in order.split(256)]
    return torch.cat(parts)[order.argsort()]  # back in the examples' order


def fit(model: nn.Module, train: Examples, seed: int, config: DownstreamConfig,
        device: torch.device) -> None:
    """Fine-tune `model` (an encoder's copy under a new linear layer) on `train`, then set it to
    eval mode. A label per example ([B]), or per token ([B, L], IGNORE where there is none)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    order = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(config.steps):
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * warm * (1.0 - step / config.steps)
        rows = torch.randint(len(train), (config.batch_size,), generator=order)
        inputs, labels = batch_of(train, rows, device)
        logits = model(*inputs)  # [B, C], or [B, L, C] for a label per token
        labels = labels[:, : logits.shape[1]] if labels.dim() == 2 else labels
        loss = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()


def by_length(examples: Examples) -> Tensor:
    """Row order shortest first, so that evaluation batches carry little padding."""
    return (examples.input_ids != PAD_ID).sum(1).argsort(stable=True)


def features(encoder: nn.Module, examples: Examples, device: torch.device) -> Tensor:
    encoder.eval()
    order = by_length(examples)
    with torch.no_grad():
        parts = [example_features(encoder, *batch_of(examples, rows, device)[0])
                 for rows in order.split(256)]
    return torch.cat(parts).float().cpu()[order.argsort()]  # [N, D or 4D], in the examples' order


def probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_labels: int,
          seed: int, config: DownstreamConfig) -> float:
    predicted = probe_predictions(train_x, train_y, test_x, num_labels, seed, config)
    return (predicted == test_y).float().mean().item()


def probe_predictions(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_labels: int,
                      seed: int, config: DownstreamConfig) -> Tensor:
    """The probe's predicted label of every test row."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    with seeded(seed):
        linear = nn.Linear(train_x.shape[1], num_labels)
        optimizer = torch.optim.AdamW(linear.parameters(), lr=config.probe_lr, weight_decay=1e-2)
        order = torch.Generator().manual_seed(seed)
        for _ in range(config.probe_epochs):
            for rows in torch.randperm(len(train_x), generator=order).split(config.batch_size):
                loss = F.cross_entropy(linear(train_x[rows]), train_y[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            return linear(test_x).argmax(-1)


# %% [markdown]
# ## The suite: one number per task, and one overall
#
# For each task and each seed we get a test accuracy. A task's score is the mean over seeds,
# with their standard deviation; the suite's **score** is, per seed, the mean over tasks (an
# unweighted average, as GLUE's), then the mean and standard deviation of that over seeds.
# The spread is that of fine-tuning alone; the pretraining run is one run.

# %%
def evaluate_encoder(encoder: nn.Module, tasks: dict[str, ClassificationTask],
                     config: DownstreamConfig | None = None,
                     device: torch.device | str = "cpu") -> dict[str, Any]:
    """Score one encoder on every task: accuracies per seed, means and spreads."""
    config = config or DownstreamConfig()
    device = torch.device(device)
    encoder = encoder.to(device)
    was_training = encoder.training
    seeds = list(range(config.seeds))
    results: dict[str, Any] = {"mode": config.mode, "tasks": {}}
    for name, task in tasks.items():
        if config.mode == "probe":
            train_x = features(encoder, task.train, device)
            test_x = features(encoder, task.test, device)
            runs = [probe(train_x, task.train.labels, test_x, task.test.labels, task.num_labels,
                          s, config)
                    for s in seeds]
        else:
            runs = [fine_tune(encoder, task, s, config, device) for s in seeds]
        results["tasks"][name] = {"mean": statistics.fmean(runs), "std": spread(runs),
                                  "runs": runs, "chance": 1.0 / task.num_labels,
                                  "train_examples": len(task.train),
                                  "test_examples": len(task.test)}
    per_seed = [statistics.fmean(results["tasks"][name]["runs"][i] for name in tasks)
                for i in range(len(seeds))]
    results["score"] = {"mean": statistics.fmean(per_seed), "std": spread(per_seed),
                        "runs": per_seed}
    encoder.train(was_training)
    return results


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


# %% [markdown]
# ## Any pretrained encoder
#
# Every paper's model keeps its pretrained network in `.encoder`. The suite is built from the
# corpus and tokenizer that encoder was trained on (its `CorpusConfig`), so the token ids mean
# the same thing. From a shell, on the folder of any `labnotes train` run:
#
# ```console
# $ labnotes eval downstream --checkpoint runs/electra
# $ labnotes eval downstream --checkpoint runs/mlm --probe
# ```

# %%
def evaluate_pretrained(encoder: nn.Module, corpus: CorpusConfig,
                        config: DownstreamConfig | None = None,
                        device: torch.device | str = "cpu") -> dict[str, Any]:
    config = config or DownstreamConfig()
    tasks = build_tasks(prepare_corpus(corpus), config, encoder.config.max_len)
    return evaluate_encoder(encoder, tasks, config, device)


# %% [markdown]
# ## A labelled Chinese task: product reviews
#
# The three tasks above are made from whatever corpus the encoder read. For Chinese we also
# have a task labelled by people: the product reviews of the [data page](data.md), positive
# or negative, the kind of task (ChnSentiCorp) on which Chinese BERTs are compared. The data
# page already splits them by content hash, each review once, so no review is on both sides.
# `sentiment_task` encodes them with the encoder's own tokenizer, cuts each to `max_tokens`,
# and keeps a balanced, fixed sample of each side (`max_train_examples` and
# `max_test_examples`, half of each label, chosen with `data_seed`), so that it is scored in
# seconds, by fine-tuning or by the probe, like any task of the suite.
#
# Its floor is a **bag of characters**: a logistic regression on how often each token occurs
# in a review, with no encoder at all. Sentiment is largely carried by words such as 好 or 差,
# which a bag of characters sees as well as any encoder; an encoder earns its keep above it.

# %%
def sentiment_task(tokenizer: Any, config: DownstreamConfig | None = None,
                   max_len: int | None = None) -> ClassificationTask:
    """The Chinese product reviews (labnotes.data) as a balanced two-label task."""
    from labnotes.data import chinese_sentiment_reviews  # needs labnotes[zh]: only when asked

    config = config or DownstreamConfig()
    room = min(config.max_tokens, max_len or config.max_tokens) - 2
    rng = random.Random(f"{config.data_seed}/sentiment")
    parts = []
    for reviews, cap in zip(chinese_sentiment_reviews(),
                            (config.max_train_examples, config.max_test_examples)):
        candidates = [{"text": text, "label": label, "document": index}
                      for index, (text, label) in enumerate(reviews)]
        chosen = balanced(candidates, 2, cap, rng)
        parts.append(to_tensors([single(tokenizer.encode_with_words(e["text"])[0][:room],
                                        e["label"], e["document"]) for e in chosen]))
    return ClassificationTask("sentiment", 2, *parts)


def bag_of_tokens(task: ClassificationTask, seeds: int,
                  config: DownstreamConfig) -> dict[str, Any]:
    """The probe on token counts (of the tokens seen in training), no encoder: a floor; a pair
    task's two sentences counted apart and joined by the pair head. Returns what `per_example`
    returns."""
    parts = [task.train, task.test]
    width = int(max(part.input_ids.max() for part in parts)) + 1
    if task.pair:
        width = max(width, int(max(part.second_ids.max() for part in parts)) + 1)

    def counts(ids: Tensor) -> Tensor:
        return torch.zeros(len(ids), width).scatter_add_(1, ids, torch.ones(ids.shape))

    bags = [counts(part.input_ids) for part in parts]
    if task.pair:
        bags = [pair_features(bag, counts(part.second_ids)) for bag, part in zip(bags, parts)]
    seen = bags[0].std(0) > 0  # a token never seen in training says nothing
    runs = probe_runs(bags[0][:, seen], task.train.labels, bags[1][:, seen],
                      task.test.labels, task.num_labels, seeds, config)
    return {**runs, "groups": list(range(len(task.test)))}


# %% [markdown]
# ## A label on every token: the token probe
#
# Some properties belong to a token in its sentence, not to the sentence: the part of speech
# of the word a character is in, say. A `TokenTask` holds sentences whose `labels` are
# `[N, L]`, a label per token and `IGNORE` (−100) on `[CLS]`, `[SEP]` and padding. The
# **token probe** is the frozen-feature probe above applied to every labelled token's output
# vector $h_t$ instead of the sentence's mean: the same standardisation and logistic
# regression, on many more rows, so it takes larger batches and fewer passes
# (`token_probe_settings`). Its floor is the **most frequent label of each token id** in the
# training sentences (the overall most frequent label for a token never seen there): what a
# lookup table gets without reading any context.
#
# `token_probe`, and `per_example` for a sentence task (either mode, as `evaluate_encoder`
# scores it), keep besides each seed's accuracy whether every test item was right, so that an
# experiment can put intervals on a score by resampling test sentences or examples.

# %%
@dataclass
class TokenTask:
    name: str
    num_labels: int
    train: Examples  # labels [N, L]: IGNORE where a token has no label
    test: Examples


def token_examples(rows: list[tuple[list[int], list[int], int]], max_tokens: int) -> Examples:
    """Examples from (token ids, label of each token, document) rows, cut to max_tokens."""
    room = max_tokens - 2
    examples = [{"ids": [CLS_ID, *ids[:room], SEP_ID], "segments": [0] * (len(ids[:room]) + 2),
                 "label": 0, "document": document} for ids, _, document in rows]
    tensors = to_tensors(examples)
    labels = torch.full(tensors.input_ids.shape, IGNORE, dtype=torch.long)
    for row, (_, token_labels, _) in enumerate(rows):
        labels[row, 1: 1 + len(token_labels[:room])] = torch.tensor(token_labels[:room])
    return dataclasses.replace(tensors, labels=labels)


def token_probe_settings(config: DownstreamConfig) -> DownstreamConfig:
    return dataclasses.replace(config, batch_size=512, probe_epochs=10)


def token_features(encoder: nn.Module, examples: Examples,
                   device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(features [M, D], labels [M], sentence of each [M]) of the M labelled tokens."""
    encoder.eval()
    parts = []
    with torch.no_grad():
        for rows in torch.arange(len(examples)).split(256):
            (ids, segments, _), _ = batch_of(examples, rows, device)
            real = ids != PAD_ID
            hidden = encoder(ids, padding_mask=real,
                             segment_ids=segments if encoder.config.num_segments else None)
            labels = examples.labels[rows, : ids.shape[1]]
            keep = labels != IGNORE
            sentence = rows[:, None].expand_as(labels)
            parts.append((hidden.float().cpu()[keep], labels[keep], sentence[keep]))
    return tuple(torch.cat(items) for items in zip(*parts))  # type: ignore[return-value]


def token_probe(encoder: nn.Module, task: TokenTask, seeds: int,
                config: DownstreamConfig | None = None,
                device: torch.device | str = "cpu") -> dict[str, Any]:
    """The token probe over `seeds` seeds (see `probe_runs`); a group is a test sentence."""
    config = token_probe_settings(config or DownstreamConfig())
    device = torch.device(device)
    was_training = encoder.training
    train_x, train_y, _ = token_features(encoder.to(device), task.train, device)
    test_x, test_y, sentences = token_features(encoder, task.test, device)
    encoder.train(was_training)
    runs = probe_runs(train_x, train_y, test_x, test_y, task.num_labels, seeds, config)
    return {**runs, "groups": sentences.tolist()}


def per_example(encoder: nn.Module, task: ClassificationTask,
                config: DownstreamConfig | None = None,
                device: torch.device | str = "cpu") -> dict[str, Any]:
    """One task scored as `evaluate_encoder` scores it (`config.mode`, `config.seeds`), kept per
    test example: what `probe_runs` returns, and a group per example."""
    config = config or DownstreamConfig()
    device = torch.device(device)
    was_training = encoder.training
    encoder = encoder.to(device)
    if config.mode == "probe":
        train_x = features(encoder, task.train, device)
        test_x = features(encoder, task.test, device)
        predictions = [probe_predictions(train_x, task.train.labels, test_x, task.num_labels,
                                         seed, config) for seed in range(config.seeds)]
    else:
        predictions = [fine_tune_predictions(encoder, task, seed, config, device)
                       for seed in range(config.seeds)]
    encoder.train(was_training)
    correct = [(predicted == task.test.labels).tolist() for predicted in predictions]
    return {"runs": [sum(right) / len(right) for right in correct], "correct": correct,
            "groups": list(range(len(task.test)))}


def probe_runs(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
               num_labels: int, seeds: int, config: DownstreamConfig) -> dict[str, Any]:
    """Accuracy per seed, and whether each test row was right in each seed."""
    correct = [(probe_predictions(train_x, train_y, test_x, num_labels, seed, config)
                == test_y).tolist() for seed in range(seeds)]
    return {"runs": [sum(right) / len(right) for right in correct], "correct": correct}


def most_frequent_label(task: TokenTask) -> Tensor:
    """The floor: each test token gets its token id's most frequent training label."""
    train_ids, train_labels = (task.train.input_ids[task.train.labels != IGNORE],
                               task.train.labels[task.train.labels != IGNORE])
    counts = torch.zeros(int(task.train.input_ids.max()) + 1, task.num_labels)
    counts.index_put_((train_ids, train_labels), torch.ones(len(train_ids)), accumulate=True)
    overall = int(counts.sum(0).argmax())
    test_ids = task.test.input_ids[task.test.labels != IGNORE]
    known = test_ids < len(counts)
    guess = torch.full_like(test_ids, overall)
    seen = counts[test_ids[known]].sum(1) > 0
    guess[known] = torch.where(seen, counts[test_ids[known]].argmax(1), overall)
    return guess


# %% [markdown]
# ## Fine-tuning on every token
#
# The token probe asks what the frozen features already hold; `token_fine_tune` asks what the
# encoder can become, as a tagger would be trained. A `TokenClassifier` puts a linear layer on
# every token's output vector (dropout before it, as for sentences), and `fit`, the training
# loop of the sentence tasks, trains a copy of the encoder with it: the loss is the
# cross-entropy over the labelled tokens of the batch, `IGNORE` leaving out `[CLS]`, `[SEP]`
# and padding. It returns what `token_probe` returns, so the two read side by side.

# %%
class TokenClassifier(nn.Module):
    """The encoder under a linear layer that reads each token's own output vector."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.config.dim, num_labels)

    def forward(self, input_ids: Tensor, segment_ids: Tensor,
                second_ids: Tensor | None = None) -> Tensor:
        segments = segment_ids if self.encoder.config.num_segments else None
        hidden = self.encoder(input_ids, padding_mask=input_ids != PAD_ID, segment_ids=segments)
        return self.out(self.dropout(hidden))  # [B, L, num_labels]


def token_fine_tune(encoder: nn.Module, task: TokenTask, seeds: int,
                    config: DownstreamConfig | None = None,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Fine-tuning on every token, over `seeds` seeds; returns what `token_probe` returns."""
    config = config or DownstreamConfig()
    device = torch.device(device)
    batches = torch.arange(len(task.test)).split(256)
    correct = []
    for seed in range(seeds):
        with seeded(seed):
            model = TokenClassifier(copy.deepcopy(encoder), task.num_labels).to(device)
            fit(model, task.train, seed, config, device)
            right = []
            with torch.no_grad():
                for rows in batches:
                    inputs, _ = batch_of(task.test, rows, device)
                    predicted = model(*inputs).argmax(-1).cpu()  # [B, L]
                    labels = task.test.labels[rows, : predicted.shape[1]]
                    right.append(predicted[labels != IGNORE] == labels[labels != IGNORE])
        correct.append(torch.cat(right).tolist())
    labels = task.test.labels
    sentences = torch.arange(len(task.test))[:, None].expand_as(labels)[labels != IGNORE]
    return {"runs": [sum(r) / len(r) for r in correct], "correct": correct,
            "groups": sentences.tolist()}


# %% [markdown]
# ## What each task measures
#
# Every task, the first suite's two included, scored for a bag of words, random-init encoders
# and the MLM runs of the [comparison](experiments.compare.md) at each of their checkpoints
# (`python scripts/suite_tasks.py`, after `labnotes experiment compare`; fine-tuning, the
# suite's default; three pretraining seeds of 600 MLM steps, each scored at 200, 400 and 600).
#
# Each of the three tasks puts the MLM runs above the random-init encoders, and in every seed
# every fine-tuning run of the MLM encoder above every run of its random one (a test checks
# this on the stored numbers): word order by 14.3 points (63.6% against 49.3%), source by 7.1,
# summary match by 5.5. Summary match is the weakest: its gap is 4.9, 9.3 and 2.5 points in the
# three seeds, and its scores move by up to 6 points between fine-tuning seeds, because its
# test half is small (about 700 pairs: a 95% interval of about ±4 points for one score). Word
# order also varies between fine-tuning seeds (55–75% across the MLM runs): 60 steps are
# sometimes too few to find what the encoder knows. The three measure different things, as the
# bag of words shows. Word order cannot be read from words (47.9%, chance), and it is what an
# MLM learns last: 51% after 200 steps, 56% after 400, 64% after 600. Source is largely words
# (the bag of words gets 58.0%, the MLM 60.4%): a topic task. Summary match is between the two:
# shared words carry it a little (52.8%), the MLM's features more (55.5–56.8% from 200 steps
# on). The first suite's two tasks stay at chance for every encoder, trained or not, at every
# checkpoint: acceptability, with four neighbouring words swapped, 49.5–50.9%; same passage,
# fed as one input, 52.1–53.1%.
#
# **Summary match, first version.** Until 2026-12-05 a negative's B was drawn by *document*
# (another document first, then one of its later sentences) and a positive's by sentence, with
# replacement. Short documents' second sentences then came up more often among the negatives
# (62% of them on the test half, against 44% of the positives), and a rule reading only that
# ("B is a second sentence: negative") scored 59%; 44 of the 345 test positives repeated
# another. The MLM runs scored 58.8% on that version, the random encoders 51.7%. The
# [construction above](#task-3-summary-match) removes both; the comparison and the ELECTRA
# experiment were re-run with it (their training unchanged), and their pages give both
# versions' numbers where they differ.
#
# <!-- results: suite -->

# %% [markdown]
# ## Try it
#
# This cell builds the tasks from the embedded corpus, prints one example of each, and scores
# an encoder that has never been trained: the floor every pretrained encoder should rise above.
# Expect word order and summary match near 50%; source above its 33% chance, since a random
# encoder's average still carries which words a sentence has.

# %%
if __name__ == "__main__":
    from labnotes.transformer import Encoder, EncoderConfig

    demo_corpus = prepare_corpus(CorpusConfig())
    demo_config = quick_suite(DownstreamConfig()) if QUICK else DownstreamConfig()
    demo_tasks = build_tasks(demo_corpus, demo_config)
    for demo_name, demo_task in demo_tasks.items():
        shown = [demo_task.train.input_ids[0]]
        if demo_task.pair:
            shown.append(demo_task.train.second_ids[0])
        shown_text = " | ".join(demo_corpus.tokenizer.decode(ids[ids != PAD_ID].tolist())
                                for ids in shown)
        print(f"{demo_name}: {len(demo_task.train)} train / {len(demo_task.test)} test, "
              f"label {int(demo_task.train.labels[0])}: {shown_text}")
    torch.manual_seed(0)
    demo_encoder = Encoder(EncoderConfig(vocab_size=demo_corpus.tokenizer.vocab_size))
    print(json.dumps(evaluate_encoder(demo_encoder, demo_tasks, demo_config)["score"], indent=2))
