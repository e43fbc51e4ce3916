"""SpanBERT: the experiment.

Four encoders that differ only in how they mask (scattered tokens, whole words, geometric
spans, and geometric spans with the span boundary objective), scored by the negative
log-likelihood of held-out hidden tokens: scattered tokens, word pieces with and without their
sibling pieces in view, and whole spans, at several points of training.
"""

# %% [markdown]
# The claim, from the [SpanBERT page](spanbert.md#evidence-filling-in-held-out-spans): hiding
# contiguous spans of whole words helps span-selection tasks more than hiding scattered tokens
# (SpanBERT, arXiv:1907.10529, §6, Table 6: SQuAD 2.0 85.4 vs 83.8 F1), and the span boundary
# objective puts what a span holds into the tokens just outside it (§3.2; Table 7:
# coreference 76.3 → 79.0 F1).
#
# At our scale a model predicts a hidden token right only 5 to 13% of the time, a few points
# above always guessing the most frequent token, and accuracy cannot tell the schemes apart. So
# this page measures the **negative log-likelihood** (NLL, nats per hidden token; lower is
# better), which moves with every bit of probability a model puts on the right token, with 95%
# intervals from a bootstrap over held-out blocks, and it measures it where the schemes should
# differ:
#
# 1. **held-out blocks** masked BERT's way and SpanBERT's way (the headline);
# 2. **word pieces with their siblings in view or not**: for every word our tokenizer splits
#    into several pieces, one piece is hidden either alone (its sibling pieces visible) or with
#    the whole word. Token masking trains a model on the first case, where the rest of the word
#    gives the piece away; whole-word and span masking never show it. The difference of the two
#    NLLs, the **sibling gap**, is how much a model leans on visible siblings;
# 3. **whole spans** of 1 to 8 words, all `[MASK]`: NLL by span length and by position inside
#    the span, from the MLM head and, for the SBO model, from the boundary head alone;
# 4. all of it at four checkpoints, as **learning curves**.
#
# Each arm is the paper page's default configuration with `masking` and `boundary_objective`
# set, trained for `STEPS` steps of 64 blocks with one pretraining seed. Every arm is scored on
# the same held-out examples, built once.

# %%
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from labnotes.data import Blocks
from labnotes.downstream import DownstreamConfig, build_tasks, evaluate_encoder, quick_suite
from labnotes.experiments.common import PRESETS, at_preset  # noqa: F401  (PRESETS: cpu, gpu)
from labnotes.experiments.common import (in_order, markdown_table, pyplot, run_in_notebook,
                                         save_figure, slug, train_arm, write_table)
from labnotes.experiments.xlnet import bootstrap_ratio
from labnotes.mlm import IGNORE, mask_tokens, unigram_log_probs
from labnotes.spanbert import (SpanBERTConfig, SpanBERTModel, SpanBERTTask, block_words,
                               mask_spans, span_boundary_targets)
from labnotes.tokenizer import MASK_ID, PAD_ID, prepare_corpus
from labnotes.training import load_checkpoint, make_quick

# %% [markdown]
# ## The arms
#
# Each arm names the fields of `SpanBERTConfig` it sets. A checkpoint is kept every
# `STEPS // CHECKPOINTS` steps, and every measure below is taken at each of them.

# %%
ARMS = {
    "token masking (BERT)": {"masking": "token", "boundary_objective": False},
    "whole-word masking": {"masking": "word", "boundary_objective": False},
    "geometric spans": {"masking": "span", "boundary_objective": False},
    "geometric spans + SBO": {"masking": "span", "boundary_objective": True},
}
SEED = 0  # the pretraining seed
STEPS = 800
CHECKPOINTS = 4  # measured at STEPS / 4, STEPS / 2, 3 STEPS / 4 and STEPS
BATCH_SIZE = 64
RECOVERY_LENGTHS = (1, 2, 4, 6, 8)  # span lengths, in words, of the whole-span test
RECOVERY_SEED = 4321  # where each test span sits
SIBLING_SEED = 4322  # which piece of each split word is scored
HELD_OUT_MASK_SEED = 99  # the validation blocks masked BERT's way and SpanBERT's way
MAX_POSITION = 8  # the by-position profile covers the first 8 tokens of a span
MAX_DISTANCE = 4  # ... and distances 1-4 from the nearer boundary


def arm_config(changes: dict[str, Any], seed: int, *, quick: bool, progress: bool,
               preset: str = "cpu") -> SpanBERTConfig:
    config = SpanBERTConfig(**changes)
    config.train.seed, config.train.progress = seed, progress
    config.train.steps, config.train.batch_size = STEPS, BATCH_SIZE
    config.train.eval_every = STEPS
    config.train.checkpoint_every = STEPS // CHECKPOINTS
    config.train.keep_checkpoints = CHECKPOINTS
    return make_quick(config) if quick else at_preset(config, preset)


# %% [markdown]
# ## Scoring: the NLL of every hidden token
#
# Every test below is a set of held-out rows with some tokens hidden (`labels` holds the
# original token there, `IGNORE` elsewhere). `token_nll` runs a model once over the rows and
# returns, in the rows' own `[N, T]` layout, the NLL of each hidden token under the MLM head
# (NaN where nothing is hidden) and whether the head ranked it first. Given the spans, the SBO
# head, where the model has one, is scored the same way from the two boundaries alone.
# Keeping the layout makes every later question a mask over `[N, T]`: which tokens, which
# span length, how deep into the span.

# %%
@torch.no_grad()
def token_nll(model: SpanBERTModel | Any, inputs: Tensor, labels: Tensor, padding_mask: Tensor,
              device: torch.device, spans: Tensor | None = None,
              batch_size: int = 128) -> dict[str, Tensor]:
    """{"mlm": [N, T] NLL, "correct": [N, T] bool, and "sbo": [N, T] NLL if the model has a
    boundary head and `spans` ([K, 3]: row, first, last token) are given}; NaN where not scored.
    Without `spans`, any model with an `.encoder` and an MLM `.head` will do."""
    was_training = model.training
    model.eval()
    scores = {"mlm": torch.full(labels.shape, float("nan"), dtype=torch.float64),
              "correct": torch.zeros(labels.shape, dtype=torch.bool)}
    with_sbo = spans is not None and model.boundary_head is not None  # SpanBERT's own
    if with_sbo:
        scores["sbo"] = torch.full(labels.shape, float("nan"), dtype=torch.float64)
    for start in range(0, len(inputs), batch_size):
        part = slice(start, start + batch_size)
        part_labels = labels[part].to(device)
        hidden = model.encoder(inputs[part].to(device), padding_mask=padding_mask[part].to(device))
        selected = part_labels != IGNORE
        logits = model.head(hidden[selected]).float()
        targets = part_labels[selected]
        where = selected.cpu()
        nll = F.cross_entropy(logits, targets, reduction="none")
        scores["mlm"][part][where] = nll.double().cpu()
        scores["correct"][part][where] = (logits.argmax(-1) == targets).cpu()
        if with_sbo:
            in_part = (spans[:, 0] >= start) & (spans[:, 0] < start + batch_size)
            targets_sbo = span_boundary_targets(spans[in_part] - torch.tensor([start, 0, 0]),
                                                part_labels, None,
                                                model.boundary_head.position.num_embeddings)
            sbo_logits = model.boundary_head(hidden, targets_sbo).float()
            nll = F.cross_entropy(sbo_logits, targets_sbo.labels, reduction="none")
            scores["sbo"][part][targets_sbo.rows.cpu(), targets_sbo.position.cpu()] = \
                nll.double().cpu()
    model.train(was_training)
    return scores


def unigram_nll(log_q: Tensor, labels: Tensor) -> Tensor:
    """[N, T] NLL of each hidden token under word frequencies alone (NaN elsewhere)."""
    hidden = labels != IGNORE
    nll = torch.full(labels.shape, float("nan"), dtype=torch.float64)
    nll[hidden] = -log_q[labels[hidden]].double()
    return nll


# %% [markdown]
# ## Intervals: a bootstrap over held-out blocks
#
# Tokens of one block share a context, so they are not independent draws. The 95% interval
# resamples whole **blocks** with replacement and recomputes the mean NLL over their tokens
# (the XLNet experiment's `bootstrap_ratio`, 2000 resamples). A difference between two
# conditions on the same tokens (the sibling gap) gets its interval the same way, from the
# per-token differences, so the pairing is kept.

# %%
def interval(values: Tensor, where: Tensor, block_of_row: Tensor,
             seed: int = 0) -> dict[str, float]:
    """Mean of values[where] ([N, T]) with its 95% block-bootstrap interval; block_of_row [N]
    names the held-out block each row was cut from. {} when nothing is selected."""
    where = where & ~values.isnan()
    if not bool(where.any()):
        return {}
    blocks = block_of_row[:, None].expand_as(values)[where]
    size = int(block_of_row.max()) + 1
    sums = torch.bincount(blocks, weights=values[where].double(), minlength=size)
    counts = torch.bincount(blocks, minlength=size)
    used = counts > 0
    result = bootstrap_ratio(sums[used].tolist(), counts[used].tolist(), seed)
    return {"mean": result["mean"], "low": result["low"], "high": result["high"],
            "tokens": result["tokens"], "blocks": result["spans"]}


# %% [markdown]
# ## Test 1: held-out blocks, masked BERT's way and SpanBERT's way
#
# The validation blocks masked once with 15% scattered tokens (BERT's 80/10/10) and once with
# SpanBERT's geometric spans, with a fixed seed: the same hidden tokens for every arm. Each
# scheme is at home on one of the two.

# %%
def held_out_masks(blocks: Blocks, vocab_size: int) -> dict[str, dict[str, Tensor]]:
    """{"token": ..., "span": ...}, each {input_ids, labels, padding_mask, block}."""
    ids, special, padding = blocks.input_ids, blocks.special_tokens_mask, blocks.input_ids != PAD_ID
    token_inputs, token_labels = mask_tokens(
        ids, special, vocab_size=vocab_size,
        generator=torch.Generator().manual_seed(HELD_OUT_MASK_SEED))
    span_inputs, span_labels, _ = mask_spans(
        ids, special, vocab_size=vocab_size, whole_word_ids=blocks.word_ids,
        generator=torch.Generator().manual_seed(HELD_OUT_MASK_SEED))
    block = torch.arange(len(ids))
    return {"token": {"input_ids": token_inputs, "labels": token_labels,
                      "padding_mask": padding, "block": block},
            "span": {"input_ids": span_inputs, "labels": span_labels,
                     "padding_mask": padding, "block": block}}


# %% [markdown]
# ## Test 2: a word piece with its siblings in view, and without
#
# A word of several WordPiece tokens (`token`, `##izer`) is the case token masking and
# whole-word masking treat differently: BERT's masking often hides one piece and shows the
# rest, whole-word masking never does. For every word of two or more pieces in the held-out
# blocks we pick one piece at random (one uniform draw per word) and build two copies of the
# blocks: in `visible` only that piece is `[MASK]`, in `hidden` every piece of its word is.
# The scored token, its position and everything outside its word are the same in both; only
# the siblings differ. Every split word of a block is tested at once (our tokenizer splits few
# words, about one per block). The sibling gap is NLL(`hidden`) − NLL(`visible`), token by
# token.

# %%
def sibling_cloze(blocks: Blocks, seed: int = SIBLING_SEED) -> dict[str, Tensor]:
    """{visible, hidden (input_ids), labels (the chosen piece only), padding_mask, block}."""
    draws = torch.rand(blocks.input_ids.shape, generator=torch.Generator().manual_seed(seed))
    chosen = torch.zeros_like(blocks.input_ids, dtype=torch.bool)
    whole = torch.zeros_like(chosen)
    rows = zip(blocks.word_ids.tolist(), blocks.special_tokens_mask.tolist(), draws.tolist())
    for row, (word_row, special_row, draw_row) in enumerate(rows):
        for first, last, _ in block_words(word_row, special_row)[0]:
            pieces = last - first + 1
            if pieces < 2:
                continue
            chosen[row, first + min(int(draw_row[first] * pieces), pieces - 1)] = True
            whole[row, first:last + 1] = True
    ids = blocks.input_ids
    mask = torch.full_like(ids, MASK_ID)
    return {"visible": torch.where(chosen, mask, ids), "hidden": torch.where(whole, mask, ids),
            "labels": torch.where(chosen, ids, torch.full_like(ids, IGNORE)),
            "padding_mask": ids != PAD_ID, "block": torch.arange(len(ids))}


# %% [markdown]
# ## Test 3: whole spans, by length and by position
#
# In every validation block we hide one span of each length in `RECOVERY_LENGTHS` (one
# example each): whole words, all `[MASK]`, with a real word on each side, so neither boundary
# is `[CLS]` or `[SEP]`. The MLM head fills the span token by token; the SBO head, where the
# model has one, predicts it from the two boundaries alone. We report the NLL by span length
# (in words), by position from the span's start (1 = its first token) and by distance from the
# nearer boundary (1 = next to it), and, as before, per-token accuracy and exact match (every
# token of the span right).

# %%
def span_recovery_set(blocks: Any, lengths: tuple[int, ...] = RECOVERY_LENGTHS,
                      seed: int = RECOVERY_SEED) -> dict[str, Tensor]:
    """One example per (block, length). Returns input_ids (masked), labels, padding_mask,
    spans [N, 3] (row = example), span_words [N] and block [N], the block it was cut from."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.rand((len(blocks), len(lengths)), generator=generator).tolist()
    examples, spans, span_words = [], [], []
    rows = zip(blocks.word_ids.tolist(), blocks.special_tokens_mask.tolist())
    for row, (word_row, special_row) in enumerate(rows):
        words, _ = block_words(word_row, special_row)
        for length, pick in zip(lengths, picks[row]):
            places = len(words) - length - 1  # start words 1 .. len - length - 1
            if places < 1:
                continue
            start = 1 + min(int(pick * places), places - 1)
            examples.append(row)
            spans.append([len(spans), words[start][0], words[start + length - 1][1]])
            span_words.append(length)
    block = torch.tensor(examples, dtype=torch.long)
    original = blocks.input_ids[block]
    spans_tensor = torch.tensor(spans, dtype=torch.long).reshape(-1, 3)
    positions = torch.arange(original.shape[1])
    inside = (positions >= spans_tensor[:, 1:2]) & (positions <= spans_tensor[:, 2:3])  # [N, T]
    return {"input_ids": original.masked_fill(inside, MASK_ID),
            "labels": torch.where(inside, original, torch.full_like(original, IGNORE)),
            "padding_mask": original != PAD_ID, "spans": spans_tensor,
            "span_words": torch.tensor(span_words, dtype=torch.long), "block": block}


def span_places(recovery_set: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """([N, T] position from the span's start, 1 = first token; [N, T] distance from the
    nearer boundary, 1 = next to it); meaningful inside the span only."""
    spans = recovery_set["spans"]
    positions = torch.arange(recovery_set["labels"].shape[1])
    from_start = positions - spans[:, 1:2] + 1
    distance = torch.minimum(from_start, spans[:, 2:3] - positions + 1)
    return from_start, distance


def span_profile(nll: Tensor, recovery_set: dict[str, Tensor]) -> dict[str, Any]:
    """Mean NLL with intervals: overall, by span length (words), by position from the start and
    by distance from the nearer boundary."""
    inside = recovery_set["labels"] != IGNORE
    block = recovery_set["block"]
    from_start, distance = span_places(recovery_set)
    span_words = recovery_set["span_words"][:, None]
    profile: dict[str, Any] = {"all": interval(nll, inside, block), "by_length": {},
                               "by_position": {}, "by_distance": {}}
    for length in sorted(set(recovery_set["span_words"].tolist())):
        profile["by_length"][str(length)] = interval(nll, inside & (span_words == length), block)
    for key, place, top in (("by_position", from_start, MAX_POSITION),
                            ("by_distance", distance, MAX_DISTANCE)):
        for value in range(1, top + 1):
            cell = interval(nll, inside & (place == value), block)
            if cell:
                profile[key][str(value)] = cell
    return profile


def recovery_scores(correct: Tensor, recovery_set: dict[str, Tensor]) -> dict[str, Any]:
    """Per-token accuracy and exact match, overall and by span length."""
    labels, span_words = recovery_set["labels"], recovery_set["span_words"]
    inside = labels != IGNORE  # [N, T]
    hits, sizes = (correct & inside).sum(1), inside.sum(1)
    scores: dict[str, Any] = {"token_accuracy": (hits.sum() / sizes.sum()).item(),
                              "exact_match": (hits == sizes).float().mean().item(),
                              "by_length": {}}
    for length in sorted(set(span_words.tolist())):
        chosen = span_words == length
        scores["by_length"][str(length)] = {
            "token_accuracy": (hits[chosen].sum() / sizes[chosen].sum()).item(),
            "exact_match": (hits[chosen] == sizes[chosen]).float().mean().item(),
            "spans": int(chosen.sum())}
    return scores


# %% [markdown]
# ## Measuring one model
#
# `measure` takes a scorer (a model, or word frequencies alone: the unigram floor) through
# the three tests. At the last checkpoint it keeps the full span profile and the accuracies;
# at earlier ones only the overall numbers that the learning curves plot.

# %%
Scorer = Any  # (input_ids, labels, padding_mask, spans or None) -> token_nll's dict


def held_out_sets(blocks: Blocks, vocab_size: int) -> dict[str, Any]:
    return {"masked": held_out_masks(blocks, vocab_size), "sibling": sibling_cloze(blocks),
            "recovery": span_recovery_set(blocks)}


def model_scorer(model: SpanBERTModel, device: torch.device) -> Scorer:
    return lambda ids, labels, padding, spans=None: token_nll(model, ids, labels, padding,
                                                              device, spans)


def unigram_scorer(log_q: Tensor) -> Scorer:
    """Word frequencies alone: the NLL of log q(w), and 'correct' for the most frequent token."""
    most_frequent = int(log_q.argmax())
    return lambda ids, labels, padding, spans=None: {"mlm": unigram_nll(log_q, labels),
                                                     "correct": labels == most_frequent}


def measure(score: Scorer, sets: dict[str, Any], *, detail: bool,
            per_token: dict[str, Tensor] | None = None) -> dict[str, Any]:
    """The three tests' numbers; `per_token`, if given, receives each test's [N, T] NLLs (the
    sibling test's gap), for the paired comparisons below."""
    result: dict[str, Any] = {}
    per_token = {} if per_token is None else per_token
    for key, rows in sets["masked"].items():
        scores = score(rows["input_ids"], rows["labels"], rows["padding_mask"])
        hidden = rows["labels"] != IGNORE
        result[f"{key}_masked"] = interval(scores["mlm"], hidden, rows["block"])
        result[f"{key}_masked_accuracy"] = scores["correct"][hidden].double().mean().item()
        per_token[f"{key}_masked"] = scores["mlm"]
    sibling = sets["sibling"]
    chosen = sibling["labels"] != IGNORE
    visible, hidden = (score(sibling[key], sibling["labels"], sibling["padding_mask"])["mlm"]
                       for key in ("visible", "hidden"))
    result["sibling"] = {"visible": interval(visible, chosen, sibling["block"]),
                         "hidden": interval(hidden, chosen, sibling["block"]),
                         "gap": interval(hidden - visible, chosen, sibling["block"])}
    per_token["sibling_gap"] = hidden - visible
    recovery = sets["recovery"]
    scores = score(recovery["input_ids"], recovery["labels"], recovery["padding_mask"],
                   recovery["spans"])
    inside = recovery["labels"] != IGNORE
    per_token["whole_spans"] = scores["mlm"]
    result["spans"] = {head: span_profile(scores[head], recovery) if detail
                       else {"all": interval(scores[head], inside, recovery["block"])}
                       for head in ("mlm", "sbo") if head in scores}
    if detail:
        result["span_accuracy"] = recovery_scores(scores["correct"], recovery)
    return result


# %% [markdown]
# Two arms' intervals can overlap while one is lower on almost every block, because the blocks
# themselves differ in difficulty. So each arm is also compared with token masking **on the
# same hidden tokens**: the per-token difference of the two NLLs at the last checkpoint, with
# its own block-bootstrap interval (for the sibling test, the difference of the two gaps).

# %%
def test_rows(sets: dict[str, Any]) -> dict[str, tuple[Tensor, Tensor]]:
    """(which tokens are scored [N, T], block of each row [N]) of each test, by per_token key."""
    masked, sibling, recovery = sets["masked"], sets["sibling"], sets["recovery"]
    return {"token_masked": (masked["token"]["labels"] != IGNORE, masked["token"]["block"]),
            "span_masked": (masked["span"]["labels"] != IGNORE, masked["span"]["block"]),
            "sibling_gap": (sibling["labels"] != IGNORE, sibling["block"]),
            "whole_spans": (recovery["labels"] != IGNORE, recovery["block"])}


def paired_differences(per_token: dict[str, Tensor], reference: dict[str, Tensor],
                       sets: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean of (this arm − the reference) over the same tokens, with its 95% interval."""
    return {key: interval(per_token[key] - reference[key], where, block)
            for key, (where, block) in test_rows(sets).items()}


def downstream_suite(task: SpanBERTTask, quick: bool) -> tuple[dict[str, Any], DownstreamConfig]:
    config = DownstreamConfig(seeds=1)
    config = quick_suite(config) if quick else config
    prepared = prepare_corpus(task.config.corpus)
    return build_tasks(prepared, config, task.config.model.max_len), config


# %% [markdown]
# ## Running the arms
#
# Every arm trains afresh; then each of its checkpoints is loaded and measured. The held-out
# sets come from the first task built and are the same for every arm. With `DOWNSTREAM` set,
# the final encoder is also fine-tuned on the [downstream suite](downstream.md) (one
# fine-tuning seed) and the table gains a column; that costs about a minute per arm, and the
# stored run leaves it out to fit its time budget.

# %%
DOWNSTREAM = False  # fine-tune the final encoders on the downstream suite too


def run_experiment(work_dir: Path, *, quick: bool = False, progress: bool = True,
                   preset: str = "cpu") -> dict[str, Any]:
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    sets, reference = None, {}
    for name, changes in ARMS.items():
        config = arm_config(changes, SEED, quick=quick, progress=progress, preset=preset)
        task = SpanBERTTask(config)
        if sets is None:  # the same held-out examples for every arm
            vocab_size = task.tokenizer.vocab_size
            sets = held_out_sets(Blocks(**task.valid), vocab_size)
            log_q = unigram_log_probs(task.train_blocks.input_ids, vocab_size)
            unigram = measure(unigram_scorer(log_q), sets, detail=True)
            if DOWNSTREAM:
                downstream_tasks, downstream_config = downstream_suite(task, quick)
        arm_started = time.perf_counter()
        summary, _ = train_arm(task, config, work_dir, name)
        trained = time.perf_counter()
        device = next(task.model.parameters()).device
        checkpoints = sorted((Path(work_dir) / slug(name) / "checkpoints").glob("step-*"))
        curve, per_token = [], {}
        for checkpoint in checkpoints:
            state = load_checkpoint(checkpoint, task=task, model=task.model, optimizer=None,
                                    config=None)
            last = checkpoint == checkpoints[-1]
            point = measure(model_scorer(task.model, device), sets, detail=last,
                            per_token=per_token)
            curve.append({"step": state["step"], **point})
        measured = time.perf_counter()
        reference = reference if runs else per_token  # the first arm: token masking
        run = {"summary": summary, "curve": curve, "train_seconds": trained - arm_started,
               "measure_seconds": measured - trained,
               "minus_token_masking": paired_differences(per_token, reference, sets)}
        if DOWNSTREAM:
            run["downstream"] = evaluate_encoder(task.model.encoder, downstream_tasks,
                                                 downstream_config, device)
            run["downstream_seconds"] = time.perf_counter() - measured
        runs[name] = run
    sibling, recovery = sets["sibling"], sets["recovery"]
    return {"paper": "spanbert", "seed": SEED, "steps": config.train.steps,
            "batch_size": config.train.batch_size, "runs": runs, "unigram": unigram,
            "held_out": {"blocks": len(sets["masked"]["token"]["block"]),
                         "split_words": int((sibling["labels"] != IGNORE).sum()),
                         "recovery_spans": len(recovery["input_ids"]),
                         "recovery_lengths": list(RECOVERY_LENGTHS)},
            "downstream": "fine-tuned, one seed" if DOWNSTREAM else None,
            "seconds": time.perf_counter() - started}


# %% [markdown]
# ## The tables and the figures, from `results.json`
#
# Five tables: the headline NLL on held-out blocks; the sibling gap; each arm's paired
# difference from token masking; whole spans by length and by distance from the nearer
# boundary; and the learning curves. NLLs are in nats per hidden
# token with 95% block-bootstrap intervals. Two figures: the learning curves, and the
# whole-span NLL by length, by position from the start and by distance from the boundary.

# %%
HEAD_NAMES = {"mlm": "MLM head", "sbo": "SBO head alone"}
UNIGRAM = "word frequencies (unigram)"


def draw(results: dict[str, Any], out_dir: Path) -> None:
    write_table(out_dir / "table.md", results_table(results))
    plot_learning_curves(results, out_dir / "learning_curves.svg")
    plot_span_profile(results, out_dir / "span_nll.svg")


def nll_cell(cell: dict[str, float]) -> str:
    """'6.123 [6.101, 6.145]'; '—' when there was nothing to score."""
    if not cell:
        return "—"
    return f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def short_cell(cell: dict[str, float]) -> str:
    """'6.12 ± 0.03', the ± half the width of the 95% interval."""
    if not cell:
        return "—"
    return f"{cell['mean']:.2f} ± {(cell['high'] - cell['low']) / 2:.2f}"


def final(run: dict[str, Any]) -> dict[str, Any]:
    return run["curve"][-1]


def results_table(results: dict[str, Any]) -> str:
    runs = {name: results["runs"][name] for name in in_order(results["runs"], ARMS)}
    unigram, held_out = results["unigram"], results["held_out"]
    finals = {UNIGRAM: unigram, **{name: final(run) for name, run in runs.items()}}
    with_downstream = all("downstream" in run for run in runs.values())

    headline_header = ["model", "token-masked NLL", "span-masked NLL", "token-masked acc.",
                       "span-masked acc."] + (["downstream mean"] if with_downstream else [])
    headline_rows = []
    for name, point in finals.items():
        row = [name, nll_cell(point["token_masked"]), nll_cell(point["span_masked"]),
               f"{100 * point['token_masked_accuracy']:.1f}",
               f"{100 * point['span_masked_accuracy']:.1f}"]
        if with_downstream:
            row.append("—" if name == UNIGRAM else
                       f"{100 * runs[name]['downstream']['score']['mean']:.1f}")
        headline_rows.append(row)

    sibling_header = ["model", "siblings visible", "whole word hidden",
                      "sibling gap (hidden − visible)"]
    sibling_rows = [[name, *(nll_cell(point["sibling"][key])
                             for key in ("visible", "hidden", "gap"))]
                    for name, point in finals.items()]

    lengths = list(unigram["spans"]["mlm"]["by_length"])
    distances = list(unigram["spans"]["mlm"]["by_distance"])
    span_header = (["model, head", "all"]
                   + [f"{n} word{'s' if n != '1' else ''}" for n in lengths]
                   + [f"distance {d}" for d in distances] + ["acc."])
    span_rows = []
    for name, point in finals.items():
        for head, profile in point["spans"].items():
            label = name if name == UNIGRAM else f"{name}, {HEAD_NAMES[head]}"
            accuracy = (f"{100 * point['span_accuracy']['token_accuracy']:.1f}"
                        if head == "mlm" else "—")
            span_rows.append([label, short_cell(profile["all"])]
                             + [short_cell(profile["by_length"].get(n, {})) for n in lengths]
                             + [short_cell(profile["by_distance"].get(d, {})) for d in distances]
                             + [accuracy])

    curve_header = ["model", "step", "token-masked NLL", "span-masked NLL", "sibling gap",
                    "whole spans, MLM head", "whole spans, SBO head"]
    curve_rows = [[name, point["step"], short_cell(point["token_masked"]),
                   short_cell(point["span_masked"]), short_cell(point["sibling"]["gap"]),
                   short_cell(point["spans"]["mlm"]["all"]),
                   short_cell(point["spans"].get("sbo", {}).get("all", {}))]
                  for name, run in runs.items() for point in run["curve"]]

    reference = next(iter(runs))
    difference_header = ["model", "token-masked NLL", "span-masked NLL", "sibling gap",
                         "whole spans, MLM head"]
    difference_rows = [[name] + [nll_cell(run["minus_token_masking"][key]) for key in
                                 ("token_masked", "span_masked", "sibling_gap", "whole_spans")]
                       for name, run in runs.items() if name != reference]

    blocks = held_out["blocks"]
    headline_title = (f"**Held-out NLL at the end of training** (nats per hidden token, lower is "
                      f"better; mean [95% interval] over {blocks} held-out blocks masked BERT's "
                      "way and SpanBERT's way; accuracy in %):")
    sibling_title = (f"**Word pieces with their siblings in view, or hidden with them** (one "
                     f"piece of each of the {held_out['split_words']} held-out words split into "
                     "2 or more pieces; NLL in nats, mean [95% interval]):")
    span_title = (f"**Spans hidden whole** ({held_out['recovery_spans']} spans of "
                  f"{lengths[0]}–{lengths[-1]} words, all `[MASK]`; NLL in nats by span length "
                  "and by distance from the nearer boundary, ± half the 95% interval; "
                  "MLM head's token accuracy in %):")
    difference_title = (f"**Each arm minus {reference}, on the same hidden tokens** (nats; "
                        "mean [95% interval] of the per-token difference at the end of "
                        "training; below 0: lower NLL, or a smaller sibling gap):")
    curve_title = ("**Learning curves** (NLL in nats at each checkpoint, ± half the 95% "
                   "interval; sibling gap as above):")
    footer = (f"One pretraining seed, {results['steps']} steps of {results['batch_size']} blocks "
              "per arm; intervals from 2000 bootstrap resamples of held-out blocks. The unigram "
              "row scores each hidden token by its training-set frequency alone.")
    tables = [(headline_title, headline_header, headline_rows),
              (sibling_title, sibling_header, sibling_rows),
              (difference_title, difference_header, difference_rows),
              (span_title, span_header, span_rows), (curve_title, curve_header, curve_rows)]
    return "\n".join(f"{title}\n\n{markdown_table(header, rows)}"
                     for title, header, rows in tables) + f"\n{footer}\n"


def errorbar(axis: Any, xs: list[int], cells: list[dict[str, float]], **style: Any) -> None:
    kept = [(x, c) for x, c in zip(xs, cells) if c]
    axis.errorbar([x for x, _ in kept], [c["mean"] for _, c in kept],
                  yerr=[[c["mean"] - c["low"] for _, c in kept],
                        [c["high"] - c["mean"] for _, c in kept]],
                  marker="o", capsize=3, **style)


def plot_learning_curves(results: dict[str, Any], path: Path) -> None:
    """NLL at each checkpoint: token-masked blocks, the sibling gap, whole spans."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = ((axes[0], lambda p: p["token_masked"], "token-masked blocks: NLL (nats)"),
              (axes[1], lambda p: p["sibling"]["gap"], "sibling gap: hidden − visible (nats)"),
              (axes[2], lambda p: p["spans"]["mlm"]["all"], "whole spans: NLL (nats)"))
    unigram = results["unigram"]
    for axis, value, label in panels:
        for name in in_order(results["runs"], ARMS):
            curve = results["runs"][name]["curve"]
            steps = [point["step"] for point in curve]
            errorbar(axis, steps, [value(point) for point in curve], label=f"{name}: MLM head")
            if axis is axes[2] and "sbo" in curve[0]["spans"]:
                errorbar(axis, steps, [point["spans"]["sbo"]["all"] for point in curve],
                         linestyle="--", label=f"{name}: SBO head alone")
        axis.axhline(value(unigram)["mean"] if value(unigram) else 0.0, color="gray",
                     linestyle=":", label=UNIGRAM)
        axis.set_xlabel("training step")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
    handles, labels = axes[2].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    save_figure(figure, path)


def plot_span_profile(results: dict[str, Any], path: Path) -> None:
    """Whole-span NLL by span length, by position from the start, by distance from the
    nearer boundary: every MLM head, the SBO head, the unigram floor."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    panels = ((axes[0], "by_length", "length of the hidden span (words)"),
              (axes[1], "by_position", "position from the span's start (tokens; 1 = first)"),
              (axes[2], "by_distance", "distance from the nearer boundary (tokens; 1 = next)"))
    lines = [(name, head, profile) for name in in_order(results["runs"], ARMS)
             for head, profile in final(results["runs"][name])["spans"].items()]
    for axis, key, label in panels:
        for name, head, profile in lines:
            points = list(profile[key])
            errorbar(axis, [int(x) for x in points], [profile[key][x] for x in points],
                     linestyle="--" if head == "sbo" else "-", label=f"{name}: {HEAD_NAMES[head]}")
        floor = results["unigram"]["spans"]["mlm"][key]
        axis.plot([int(x) for x in floor], [cell["mean"] for cell in floor.values()],
                  color="gray", linestyle=":", label=UNIGRAM)
        axis.set_xticks([int(x) for x in floor])
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("NLL of the hidden token (nats)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    save_figure(figure, path)


# %% [markdown]
# ## Run it
#
# From a shell, `labnotes experiment spanbert` trains the four arms (18 minutes on one CPU
# core, most of it training) and writes `docs/results/spanbert/`; `--redraw` redraws the
# tables and the figures from the stored `results.json`. `--preset gpu` trains the same arms
# larger, for one GPU ([how](experiments.common.md#presets-the-same-arms-larger)). In the
# notebook this cell runs the arms into `runs/experiment-spanbert/` and prints the tables.

# %%
if __name__ == "__main__":
    import sys

    run_in_notebook(sys.modules[__name__], "spanbert")
