"""Sentence pairs.

What every sentence-pair objective shares: pairs `[CLS] A [SEP] B [SEP]` cut from documents
without shortcuts in their lengths, the pooler and two-way head on `[CLS]`, the loss beside the
masked language model, and the task the training loop runs.
"""

# %% [markdown]
# BERT's next sentence prediction (Devlin et al., 2018, arXiv:1810.04805, §3.1 "Task #2") and
# ALBERT's sentence order prediction (Lan et al., 2019, arXiv:1909.11942, §3.1) read the same
# input: two consecutive pieces of one document, `[CLS] A [SEP] B [SEP]`, and a two-way label.
# They differ only in what a *negative* is. This page builds everything else, once: how pairs
# are cut from documents and how long they are, how they are encoded, the head on `[CLS]`, the
# loss, and the task. The [next sentence](nsp.md) and [sentence order](sop.md) pages each add
# their negatives and their test pairs.
#
# A pair's label is `POSITIVE` (0) when B is the text that follows A in its document, and
# `NEGATIVE` (1) when it is not: BERT's *IsNext* and *NotNext* (google-research/bert; Hugging
# Face's `next_sentence_label` uses the same numbers), ALBERT's *in order* and *swapped*
# (`sentence_order_label` is 1 for swapped).
#
# Where this page departs from BERT's own data pipeline (google-research/bert
# `create_pretraining_data.py`) it says so and why: mostly to close shortcuts that would let a
# model answer from the *shape* of a pair rather than from its content.

# %%
from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labnotes.data import CorpusError
from labnotes.tokenizer import CLS_ID, PAD_ID, SEP_ID, CorpusConfig, prepare_corpus
from labnotes.training import TrainConfig, share_of_step, task_settings
from labnotes.transformer import Encoder, EncoderConfig, LMHead, init_weights

POSITIVE, NEGATIVE = 0, 1  # B follows A / it does not (BERT's IsNext / NotNext)

# %% [markdown]
# ## Documents that can make a pair
#
# A pair is two pieces of one document, made of **whole sentences** (google-research/bert
# reads one sentence per line, a blank line between documents). BERT, too, trains on a corpus
# of whole documents, though for another reason: to extract long contiguous sequences (§3.1,
# "Pre-training data"). So a document needs at least two sentences. Shorter ones are skipped
# and counted; if too few are left we stop with a `CorpusError` that says how to fix the data.
#
# A document here is a list of sentences, each a list of token ids. For the sampler below we
# keep, per document, its tokens in one flat list and the **offsets** where sentences start:
# a piece of text is then just `(document, start, end)` in token positions, and a sentence
# boundary is any offset in the list.

# %%
def usable_documents(documents: Sequence[Sequence[Sequence[int]]], *,
                     source: str = "the corpus",
                     min_documents: int = 1) -> tuple[list[list[list[int]]], int]:
    """(documents with at least two non-empty sentences, number of documents skipped)."""
    usable = []
    for document in documents:
        sentences = [list(sentence) for sentence in document if len(sentence) > 0]
        if len(sentences) >= 2:
            usable.append(sentences)
    if len(usable) < min_documents:
        raise CorpusError(
            f"{source} has {len(usable)} document(s) with at least two sentences (skipped "
            f"{len(documents) - len(usable)} shorter one(s)), but sentence pairs need at least "
            f"{min_documents}"
            + (" (an NSP negative comes from another document)" if min_documents > 1 else "")
            + ". Give each document several sentences and separate documents with blank lines "
            "(or use one .txt file per document).")
    return usable, len(documents) - len(usable)


@dataclass(frozen=True)
class Segment:
    """Tokens `start:end` of document `document` (positions in its flat token list)."""
    document: int
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Pair:
    first: Segment  # segment A: [CLS] A [SEP]
    second: Segment  # segment B: B [SEP]
    label: int  # POSITIVE (0) or NEGATIVE (1)


# %% [markdown]
# ## How long: a target, and sometimes a short one
#
# A pair has room for $n = T - 3$ tokens, where $T$ is the sequence length (three places go
# to `[CLS]` and the two `[SEP]`s). Pretraining on full-length inputs only would leave the
# model unused to the short inputs of fine-tuning, so with probability 0.1 BERT draws a
# shorter target uniformly from $2 \dots n$ (google-research/bert `create_pretraining_data.py`,
# `short_seq_prob`, whose comments give this reason).
#
# Two differences. BERT draws the target once per document and pass, and every chunk of that
# document in that pass shares it; we draw a fresh target for every pair. And in BERT the short
# target only decides when a chunk stops growing (pairs are then cut to $n$); ours is also a
# hard limit: a pair never has more tokens than its target.

# %%
def draw_target_length(max_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    if rng.random() < short_seq_prob:
        return rng.randint(2, max_tokens)  # inclusive at both ends, as in BERT
    return max_tokens


# %% [markdown]
# ## A chunk of whole sentences, split at a random boundary
#
# BERT starts at a sentence, adds the following sentences until the chunk reaches the
# target length (or the document ends), and splits the chunk at a random sentence boundary:
# the sentences before it are A, the ones after it are B. We always take at least two
# sentences, so there is a boundary to split at.
#
# **A shortcut hides here.** The sentence that pushes the chunk over the target is, on
# average, a *long* one: a long sentence is more likely than a short one to be the one that
# crosses any given line (the inspection paradox). Growing forward always puts it at the end,
# in B, so B is a little longer than A. For NSP that is harmless, but ALBERT's sentence order
# task swaps A and B, and then "is the second segment the longer one?" already beats chance
# without reading a word. So we grow each chunk **forward or backward with equal
# probability** (a backward chunk ends at a sentence and adds the ones before it). The
# crossing sentence lands in A or in B equally often: on a corpus whose documents read the same
# forwards and backwards as far as sentence lengths go (the tests use one that holds every
# document also reversed), the pair of lengths (A, B) then has exactly the distribution of
# (B, A). Real text keeps an order of its own — the [SOP page](sop.md) says what it does on
# our corpus. `grow="forward"` gives BERT's rule, for comparison.
#
# The chunk's anchor (its first sentence forward, its last one backward) is drawn uniformly
# from all sentences that have a neighbour on that side, so each document contributes in
# proportion to its number of sentences, and two draws may overlap. BERT instead walks through
# each document once per pass and cuts it into consecutive chunks that do not overlap, so a
# document contributes in proportion to its length in tokens.

# %%
def grow_chunk(sentence_lengths: Sequence[int], anchor: int, target: int,
               forward: bool) -> tuple[int, int]:
    """Sentences [first, last) of a chunk: at least two, grown from `anchor` until `target`
    tokens."""
    count = len(sentence_lengths)
    if forward:
        first, last = anchor, anchor + 2
        total = sentence_lengths[first] + sentence_lengths[first + 1]
        while total < target and last < count:
            total += sentence_lengths[last]
            last += 1
    else:  # the mirror image: `anchor + 1` is the chunk's last sentence
        first, last = anchor, anchor + 2
        total = sentence_lengths[first] + sentence_lengths[first + 1]
        while total < target and first > 0:
            first -= 1
            total += sentence_lengths[first]
    return first, last


def split_chunk(first: int, last: int, rng: random.Random) -> int:
    """The sentence where B starts: a uniform boundary inside the chunk."""
    return rng.randint(first + 1, last - 1)


# %% [markdown]
# ## Cutting a pair to its target
#
# A chunk overshoots its target by part of its last sentence, so pairs are then cut: while
# $|A| + |B|$ exceeds the target, remove one token from the **longer** segment, from its
# front or its back with equal probability (BERT's `truncate_seq_pair`). Always trimming the
# longer side keeps both segments alive; trimming random ends means a segment cut short does
# not always end, or always begin, mid-sentence.
#
# BERT breaks ties by trimming B. We flip a coin, so that the cut treats A and B the same way,
# which the swap of the sentence-order task needs. The result is a **plan** — how many tokens
# leave each end of each segment — computed from the two lengths alone, so the same plan can be
# applied to two pairs with equal lengths (the test pairs below are built that way: they differ
# only in their content).

# %%
@dataclass(frozen=True)
class CutPlan:
    first: tuple[int, int]  # tokens removed from (front, back) of A
    second: tuple[int, int]  # ... of B


def truncation_plan(first_length: int, second_length: int, target: int,
                    rng: random.Random) -> CutPlan:
    lengths, cuts = [first_length, second_length], [[0, 0], [0, 0]]
    while lengths[0] + lengths[1] > target:
        if lengths[0] == lengths[1]:
            side = rng.randint(0, 1)  # a tie: a coin, not always B
        else:
            side = 0 if lengths[0] > lengths[1] else 1
        cuts[side][rng.randint(0, 1)] += 1  # 0: the front, 1: the back
        lengths[side] -= 1
    return CutPlan(tuple(cuts[0]), tuple(cuts[1]))


def cut(segment: Segment, front_back: tuple[int, int]) -> Segment:
    return Segment(segment.document, segment.start + front_back[0], segment.end - front_back[1])


def apply_plan(first: Segment, second: Segment, plan: CutPlan, label: int) -> Pair:
    return Pair(cut(first, plan.first), cut(second, plan.second), label)


# %% [markdown]
# ## Runs of whole sentences, indexed by length
#
# An NSP negative replaces B by text from another document with exactly as many tokens (the
# [NSP page](nsp.md#negatives-from-another-document-of-exactly-the-same-length) says why). To
# make that a lookup, we index once every **run of whole consecutive sentences** of the corpus
# that does not start at its document's first sentence, by its length in tokens (NumPy arrays
# sorted by length). `draw` takes a run of the asked length from any document but one. In the
# rare case where no other document has a run of that exact length, it takes the shortest
# longer run and cuts it to length (counted in `inexact`): a random share of the surplus from
# its front, the rest from its back.
#
# A true B often runs to the end of its document (the chunk stopped there); a random run does
# less often. In the 1,000 held-out NSP twin pairs of the embedded corpus, the true B, as cut,
# ends its document in 48% of the pairs; a run of the same length drawn with no regard to
# where it ends would, with the same cut, end its document in 33% of them (the average chance
# over those pairs). That difference is a cue: "B closes a document" would say *IsNext*. So
# `draw` can be asked for a run that ends its document, or one that does not (`at_end`), and
# the NSP page asks for whatever the true B does. When the run must end its document, a longer
# run loses its whole surplus from the front instead.

# %%
class SentenceRuns:
    """Runs of whole sentences (never a document's first sentence), indexed by token length."""

    def __init__(self, offsets: Sequence[Sequence[int]], max_length: int) -> None:
        runs: dict[bool, list[tuple[int, int, int, int]]] = {False: [], True: []}
        for document, bounds in enumerate(offsets):  # bounds: [0, end of sentence 0, ...]
            for first in range(1, len(bounds) - 1):
                for last in range(first + 1, len(bounds)):
                    length = bounds[last] - bounds[first]
                    if length > max_length:
                        break
                    at_end = last == len(bounds) - 1  # the run ends its document
                    runs[at_end].append((length, document, bounds[first], bounds[last]))
        self.by_end = {}  # at_end -> (length, document, start, end) arrays, sorted by length
        for at_end, found in runs.items():
            table = np.asarray(found, dtype=np.int64).reshape(-1, 4)
            self.by_end[at_end] = table[np.argsort(table[:, 0], kind="stable")]
        self.max_length = max_length
        self.inexact = 0

    def draw(self, length: int, exclude_document: int, rng: random.Random,
             at_end: bool) -> Segment | None:
        """A run of exactly `length` tokens from another document that ends its document
        (`at_end`) or does not; None if there is no such run that long."""
        return self._draw_from(self.by_end[at_end], length, exclude_document, rng,
                               keep_end=at_end)

    def _draw_from(self, table: np.ndarray, length: int, exclude_document: int,
                   rng: random.Random, keep_end: bool) -> Segment | None:
        lengths, documents = table[:, 0], table[:, 1]
        for candidate_length in range(length, self.max_length + 1):
            low, high = np.searchsorted(lengths, [candidate_length, candidate_length + 1])
            if low == high:
                continue
            for _ in range(8):  # usually the first draw is from another document
                index = rng.randrange(low, high)
                if documents[index] != exclude_document:
                    break
            else:
                others = np.flatnonzero(documents[low:high] != exclude_document)
                if len(others) == 0:
                    continue
                index = low + int(others[rng.randrange(len(others))])
            _, document, start, end = (int(value) for value in table[index])
            if candidate_length == length:
                return Segment(document, start, end)
            self.inexact += 1  # cut a longer run down to length
            surplus = candidate_length - length
            front = surplus if keep_end else rng.randint(0, surplus)
            return Segment(document, start + front, end - (surplus - front))
        return None


# %% [markdown]
# ## The sampler: a fresh pair every time
#
# BERT wrote its pairs to disk once (ten times over, with different masks: `dupe_factor=10`).
# We draw them while training, with the step's random generator, like RoBERTa's dynamic
# masking (arXiv:1907.11692, §4.1): no pair is fixed in advance, and a resumed run draws the
# same pairs as an uninterrupted one. One draw of a *positive* is:
#
# 1. a target length (short with probability `short_seq_prob`);
# 2. an anchor sentence and a direction, and the chunk grown from it;
# 3. a random boundary inside the chunk: A before it, B after it.
#
# The objective then decides what a negative is and cuts the pair to its target:
# `positive_example` below keeps every pair as it is; the [NSP](nsp.md) and
# [SOP](sop.md) pages add theirs. `index_runs=False` skips the index of runs, which only
# negatives from another document need.

# %%
class PairSampler:
    def __init__(self, documents: Sequence[Sequence[Sequence[int]]], max_tokens: int, *,
                 short_seq_prob: float = 0.1, grow: str = "both", source: str = "the corpus",
                 min_documents: int = 1, index_runs: bool = True) -> None:
        if max_tokens < 2:
            raise ValueError("a pair needs room for at least 2 tokens besides [CLS] and two "
                             f"[SEP], got {max_tokens}")
        self.documents, self.skipped = usable_documents(documents, source=source,
                                                        min_documents=min_documents)
        self.tokens = [[token for sentence in document for token in sentence]
                       for document in self.documents]
        self.sentence_lengths = [[len(sentence) for sentence in document]
                                 for document in self.documents]
        self.offsets = [[0, *np.cumsum(lengths).tolist()] for lengths in self.sentence_lengths]
        # anchor k of document d: forward chunks start at sentence k, backward ones end at k + 1
        self.anchors = [(d, k) for d, lengths in enumerate(self.sentence_lengths)
                        for k in range(len(lengths) - 1)]
        self.max_tokens, self.short_seq_prob, self.grow = max_tokens, short_seq_prob, grow
        longest_sentence = max(map(max, self.sentence_lengths))
        self.runs = SentenceRuns(self.offsets, max_tokens + longest_sentence) \
            if index_runs else None

    def text(self, segment: Segment) -> list[int]:
        return self.tokens[segment.document][segment.start:segment.end]

    def draw_positive(self, rng: random.Random) -> tuple[Segment, Segment, int]:
        """(A, B, target): B is the text that follows A; neither is cut yet."""
        target = draw_target_length(self.max_tokens, self.short_seq_prob, rng)
        document, anchor = self.anchors[rng.randrange(len(self.anchors))]
        forward = self.grow == "forward" or (self.grow == "both" and rng.random() < 0.5)
        first, last = grow_chunk(self.sentence_lengths[document], anchor, target, forward)
        boundary = split_chunk(first, last, rng)
        bounds = self.offsets[document]
        return (Segment(document, bounds[first], bounds[boundary]),
                Segment(document, bounds[boundary], bounds[last]), target)


def positive_example(sampler: PairSampler, rng: random.Random) -> Pair:
    """A positive, cut to its target."""
    first, second, target = sampler.draw_positive(rng)
    plan = truncation_plan(len(first), len(second), target, rng)
    return apply_plan(first, second, plan, POSITIVE)


# %% [markdown]
# ## `[CLS] A [SEP] B [SEP]`, segment ids and padding
#
# The model reads one sequence. Each position gets a **segment id**: 0 for `[CLS]`, A and the
# first `[SEP]`, 1 for B and the final `[SEP]` (BERT §3, "Input/Output Representations", and
# Figure 2; the encoder adds a learned segment embedding, see the
# [Transformer](transformer.md) page). Short pairs are padded with `[PAD]` to the longest pair
# of the batch; the padding mask keeps attention away from those positions, and they take no
# loss. The special-tokens mask marks `[CLS]`, `[SEP]` and `[PAD]`, which masking must never
# pick.

# %%
def encode_pairs(sampler: PairSampler, pairs: Sequence[Pair],
                 length: int | None = None) -> dict[str, Tensor]:
    rows = [([CLS_ID, *sampler.text(p.first), SEP_ID], [*sampler.text(p.second), SEP_ID])
            for p in pairs]
    width = length or max(len(a) + len(b) for a, b in rows)
    input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)  # [N, T]
    segment_ids = torch.zeros_like(input_ids)  # [N, T]
    for row, (a, b) in enumerate(rows):
        input_ids[row, :len(a) + len(b)] = torch.tensor(a + b)
        segment_ids[row, len(a):len(a) + len(b)] = 1
    special = (input_ids == CLS_ID) | (input_ids == SEP_ID) | (input_ids == PAD_ID)
    return {"input_ids": input_ids, "segment_ids": segment_ids,
            "padding_mask": input_ids != PAD_ID, "special_tokens_mask": special,
            "sentence_labels": torch.tensor([p.label for p in pairs])}


# %% [markdown]
# ## The model: a pooler and a two-way head
#
# The shared [`Encoder`](transformer.md) with two segments, its tied masked-language-model
# head, and for the sentence task BERT's **pooler** — the final vector of `[CLS]` through a
# dense layer and $\tanh$ — followed by a linear layer with two outputs
# (google-research/bert `modeling.py`, `pooler`; `run_pretraining.py`,
# `get_next_sentence_output`):
#
# $$p = \tanh(W_p\, h_{\texttt{[CLS]}} + b_p), \qquad \text{logits} = W_s\, p + b_s.$$
#
# `[CLS]` is not a word: it is a position whose vector no loss but the sentence loss
# touches directly, so it holds whatever that loss rewards — BERT notes that it is not a
# meaningful sentence representation without fine-tuning (§3.1, in a footnote). The task's
# evaluation reads the head; a probe can read the pooled vector $p$.

# %%
class SentencePairModel(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if config.num_segments != 2:
            raise ValueError(f"sentence pairs need num_segments=2, got {config.num_segments}")
        self.encoder = Encoder(config)
        self.mlm_head = LMHead(config, self.encoder.embeddings.token)
        self.pooler = nn.Linear(config.dim, config.dim)
        self.sentence_head = nn.Linear(config.dim, 2)
        init_weights(self.pooler), init_weights(self.sentence_head)

    def forward(self, input_ids: Tensor, segment_ids: Tensor,
                padding_mask: Tensor | None = None) -> Tensor:
        return self.encoder(input_ids, segment_ids=segment_ids,
                            padding_mask=padding_mask)  # [B, T, D]

    def pooled(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.pooler(hidden[:, 0]))  # [B, D]: the [CLS] position

    def sentence_logits(self, hidden: Tensor) -> Tensor:
        return self.sentence_head(self.pooled(hidden))  # [B, 2]


# %% [markdown]
# ## The loss: masked words plus the sentence label
#
# BERT's pretraining loss is the sum of the two means, unweighted (App. A.2;
# `run_pretraining.py` adds them):
#
# $$\mathcal{L} = \mathcal{L}_{\text{MLM}} + \mathcal{L}_{\text{sentence}}, \qquad
#   \mathcal{L}_{\text{sentence}} = -\frac{1}{B}\sum_{b} \log p_\theta(y_b \mid x_b).$$
#
# The masked words come from the [MLM page](mlm.md): its `mask_tokens` (15%, then 80/10/10) is
# applied to the whole pair after it is built, so the sentence head sees masked input just as
# in BERT, and its labels are `ignore` (−100) wherever no word is hidden. A shared page imports
# no paper, so the paper's task hands both in. `losses="sentence"` trains the sentence loss
# alone (nothing is masked), `losses="mlm"` the masked words alone — then negatives teach
# nothing, so every pair is a positive: natural text.

# %%
def pair_losses(model: SentencePairModel, batch: dict[str, Tensor], use_mlm: bool,
                use_sentence: bool, ignore: int,
                totals: dict[str, int] | None = None) -> tuple[Tensor, dict[str, float]]:
    """Masked words plus the sentence label; `totals`: counts over a step's micro-batches
    (the training page's gradient accumulation)."""
    hidden = model(batch["input_ids"], batch["segment_ids"], batch["padding_mask"])  # [B, T, D]
    total, metrics = hidden.new_zeros(()), {}
    selected = batch["labels"] != ignore  # [B, T]
    if use_mlm and bool(selected.any()):
        logits = model.mlm_head(hidden[selected])  # [N, V]: only where a word is hidden
        mlm_loss = F.cross_entropy(logits.float(), batch["labels"][selected])
        total = total + share_of_step(mlm_loss, "mlm", len(logits), totals)
        hits = logits.argmax(-1) == batch["labels"][selected]
        metrics |= {"mlm_loss": mlm_loss.detach(), "mlm_accuracy": hits.float().mean()}
    if use_sentence:
        sentence_logits = model.sentence_logits(hidden).float()  # [B, 2]
        sentence_loss = F.cross_entropy(sentence_logits, batch["sentence_labels"])
        total = total + share_of_step(sentence_loss, "sentence", len(sentence_logits), totals)
        hits = sentence_logits.argmax(-1) == batch["sentence_labels"]
        metrics |= {"sentence_loss": sentence_loss.detach(),
                    "sentence_accuracy": hits.float().mean()}
    return total, metrics


# %% [markdown]
# ## Test pairs: twins that differ only where it matters
#
# Every model is measured on pairs cut from **held-out documents**, built once with a fixed
# seed. Each positive gets a negative **twin** that shares its lengths and differs only in
# what the task is about, so a test set is exactly balanced and no length or position can tell
# the two apart. A test set is a function `(sampler, rng) -> [positive, negative]` (or `None`
# when a draw cannot make twins); the [NSP](nsp.md) and [SOP](sop.md) pages define theirs.

# %%
def build_test_set(sampler: PairSampler, make_twins: Callable, count: int,
                   seed: int) -> list[Pair]:
    rng, pairs = random.Random(seed), []
    for _ in range(50 * count):
        if len(pairs) >= 2 * count:
            break
        pairs += make_twins(sampler, rng) or []
    return pairs


# %% [markdown]
# ## Configuration
#
# Pairs are at most 64 tokens (BERT used 128, then 512: App. A.2). `losses` chooses what is
# trained, `grow` how chunks grow (above), `eval_pairs` how many positives each test set holds.

# %%
@dataclass
class PairConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: EncoderConfig = field(default_factory=lambda: EncoderConfig(num_segments=2))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, batch_size=32, eval_every=250, checkpoint_every=500))
    losses: str = "mlm+sentence"  # "mlm+sentence" (the papers), "sentence" or "mlm" alone
    short_seq_prob: float = 0.1
    grow: str = "both"  # chunks grow "both" ways at random (ours) or "forward" (BERT, ALBERT)
    mask_rate: float = 0.15
    eval_pairs: int = 1000  # positives per test set (each gets a negative twin)

    def __post_init__(self) -> None:
        if self.losses not in ("mlm+sentence", "sentence", "mlm"):
            raise ValueError(f"losses={self.losses!r}: choose mlm+sentence, sentence or mlm")
        if self.grow not in ("both", "forward"):
            raise ValueError(f"grow={self.grow!r}: choose both or forward")


# %% [markdown]
# ## Scoring held-out pairs
#
# Evaluation runs the model on a few thousand pairs in chunks of 256, each cut to the width
# of its longest pair, and reads three things: the head's two logits, the pooled vector, and
# the masked-word predictions.

# %%
def batches(batch: dict[str, Tensor], size: int = 256) -> Iterator[dict[str, Tensor]]:
    for start in range(0, len(batch["input_ids"]), size):
        part = {key: value[start:start + size] for key, value in batch.items()}
        width = int(part["padding_mask"].sum(1).max())  # drop columns that are padding everywhere
        yield {key: value[:, :width] if value.dim() == 2 else value for key, value in part.items()}


def encoder_outputs(model: SentencePairModel, part: dict[str, Tensor],
                    device: torch.device) -> Tensor:
    return model(part["input_ids"].to(device), part["segment_ids"].to(device),
                 part["padding_mask"].to(device))  # [B, T, D]


@torch.no_grad()
def sentence_scores(model: SentencePairModel, batch: dict[str, Tensor],
                    device: torch.device) -> Tensor:
    """Head logits [N, 2] (float32, on the CPU)."""
    return torch.cat([model.sentence_logits(encoder_outputs(model, part, device)).float().cpu()
                      for part in batches(batch)])


@torch.no_grad()
def pooled_vectors(model: SentencePairModel, batch: dict[str, Tensor],
                   device: torch.device) -> Tensor:
    """The pooled vectors p [N, D] (float32, on the CPU)."""
    return torch.cat([model.pooled(encoder_outputs(model, part, device)).float().cpu()
                      for part in batches(batch)])


@torch.no_grad()
def evaluate_masked_words(model: SentencePairModel, batch: dict[str, Tensor],
                          device: torch.device, ignore: int) -> dict[str, float]:
    total, correct, count = 0.0, 0, 0
    for part in batches(batch):
        part = {key: value.to(device) for key, value in part.items()}
        hidden = model(part["input_ids"], part["segment_ids"], part["padding_mask"])
        selected = part["labels"] != ignore
        logits = model.mlm_head(hidden[selected]).float()
        total += F.cross_entropy(logits, part["labels"][selected], reduction="sum").item()
        correct += int((logits.argmax(-1) == part["labels"][selected]).sum())
        count += int(selected.sum())
    return {"eval_mlm_loss": total / max(count, 1), "eval_mlm_accuracy": correct / max(count, 1),
            "eval_mlm_targets": count}


# %% [markdown]
# ## The task: batches, loss and evaluation
#
# A paper's task (`NSPTask`, `SOPTask`) is this class with its own `make_example` (how a
# training pair and its label are drawn), its `test_sets` and its masking. `make_batch` draws
# `batch_size` pairs with the step's generator (one Python `random.Random` seeded from it,
# then the masking with the generator itself), so every step's pairs and masks are a function
# of the seed and the step. `evaluate` reports the masked-word loss and accuracy on held-out
# positive pairs (drawn and masked once, with fixed seeds, so every model is scored on the
# same words) and the head's accuracy on every test set; `eval_sentence_accuracy` is the one
# of the task the model trains on. A test set the held-out documents cannot make (NSP's
# same-document negatives need documents of three sentences or more) is left out with a note.

# %%
class SentencePairTask:
    def __init__(self, config: PairConfig, *, paper: str, make_example: Callable,
                 test_sets: dict[str, Callable], mask_tokens: Callable, ignore: int) -> None:
        self.config, self.paper = config, paper
        self.mask_tokens, self.ignore = mask_tokens, ignore
        prepared = prepare_corpus(config.corpus)
        self.tokenizer = prepared.tokenizer
        config.model.vocab_size = self.tokenizer.vocab_size
        config.model.num_segments = 2
        config.model.max_len = max(config.model.max_len, config.corpus.seq_len)
        max_tokens = config.corpus.seq_len - 3

        def tokens(documents: list) -> list:
            return [[ids for ids, _ in document] for document in documents]

        common = dict(short_seq_prob=config.short_seq_prob, grow=config.grow, min_documents=2)
        self.train_pairs = PairSampler(tokens(prepared.train_documents), max_tokens,
                                       source="the training documents", **common)
        self.valid_pairs = PairSampler(tokens(prepared.valid_documents), max_tokens,
                                       source="the validation documents", **common)
        if self.train_pairs.skipped:
            print(f"{paper}: skipped {self.train_pairs.skipped} of "
                  f"{self.train_pairs.skipped + len(self.train_pairs.documents)} training "
                  "documents with fewer than two sentences", file=sys.stderr)
        self.use_mlm, self.use_sentence = "mlm" in config.losses, "sentence" in config.losses
        self.make_example = make_example if self.use_sentence else positive_example
        self.test_sets = {name: build_test_set(self.valid_pairs, twins, config.eval_pairs,
                                               seed=1000 + index)
                          for index, (name, twins) in enumerate(test_sets.items())}
        for name in [name for name, pairs in self.test_sets.items() if not pairs]:
            print(f"{paper}: the validation documents cannot make {name} test pairs; "
                  "it is not reported", file=sys.stderr)
            del self.test_sets[name]
        torch.manual_seed(config.train.seed)
        self.model = SentencePairModel(config.model)
        rng = random.Random(999)
        positives = [positive_example(self.valid_pairs, rng) for _ in range(config.eval_pairs)]
        self.mlm_test = self.mask(encode_pairs(self.valid_pairs, positives),
                                  torch.Generator().manual_seed(1234))

    def mask(self, batch: dict[str, Tensor], generator: torch.Generator,
             enabled: bool = True) -> dict[str, Tensor]:
        if not enabled:  # the sentence loss alone: the model reads the text unmasked
            return {**batch, "labels": torch.full_like(batch["input_ids"], self.ignore)}
        inputs, labels = self.mask_tokens(batch["input_ids"], batch["special_tokens_mask"],
                                          rate=self.config.mask_rate,
                                          vocab_size=self.tokenizer.vocab_size,
                                          generator=generator)
        return {**batch, "input_ids": inputs, "labels": labels}

    def settings(self) -> dict[str, Any]:
        return task_settings(self.config)

    def make_batch(self, step: int, generator: torch.Generator) -> dict[str, Tensor]:
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
        pairs = [self.make_example(self.train_pairs, rng)
                 for _ in range(self.config.train.batch_size)]
        batch = self.mask(encode_pairs(self.train_pairs, pairs), generator, enabled=self.use_mlm)
        batch.pop("special_tokens_mask")
        return batch

    def loss_counts(self, batch: dict[str, Tensor]) -> dict[str, int]:
        return {"mlm": int((batch["labels"] != self.ignore).sum()),
                "sentence": len(batch["input_ids"])}

    def loss(self, model: nn.Module, batch: dict[str, Tensor],
             totals: dict[str, int] | None = None) -> tuple[Tensor, dict[str, float]]:
        return pair_losses(model, batch, self.use_mlm, self.use_sentence, self.ignore, totals)

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        result = evaluate_masked_words(model, self.mlm_test, device, self.ignore)
        for name, pairs in self.test_sets.items():
            scores = sentence_scores(model, encode_pairs(self.valid_pairs, pairs), device)
            labels = torch.tensor([pair.label for pair in pairs])
            result[f"eval_{name}_accuracy"] = (scores.argmax(-1) == labels).float().mean().item()
            if name == self.paper:
                result["eval_sentence_accuracy"] = result[f"eval_{name}_accuracy"]
                result["eval_sentence_loss"] = F.cross_entropy(scores, labels).item()
        result["eval_loss"] = (result["eval_mlm_loss"] if self.use_mlm else 0.0) + \
            (result.get("eval_sentence_loss", 0.0) if self.use_sentence else 0.0)
        result["documents_skipped"] = self.train_pairs.skipped + self.valid_pairs.skipped
        return result


# %% [markdown]
# ## Reading a few pairs
#
# The demos on the paper pages print a few held-out pairs, the truth, and the head's
# probability of `POSITIVE`, under the paper's names for the two labels.

# %%
def show_pairs(task: SentencePairTask, pairs: Sequence[Pair], names: tuple[str, str],
               count: int = 4) -> None:
    """Print held-out pairs with the truth and the head's probability of POSITIVE."""
    device = next(task.model.parameters()).device
    task.model.eval()
    scores = sentence_scores(task.model, encode_pairs(task.valid_pairs, pairs[:count]), device)
    for pair, p in zip(pairs[:count], scores.softmax(-1)):
        print(f"A: {task.tokenizer.decode(task.valid_pairs.text(pair.first))}\n"
              f"B: {task.tokenizer.decode(task.valid_pairs.text(pair.second))}\n"
              f"   truth: {names[pair.label]}, model: P({names[POSITIVE]}) = {p[POSITIVE]:.2f}\n")
