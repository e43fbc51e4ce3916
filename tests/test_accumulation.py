"""Gradient accumulation is one large batch, for every paper's loss (masked words vary in
number from micro-batch to micro-batch, so an average of means would not be)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labnotes.bart import BARTConfig, BARTTask
from labnotes.tokenizer import CorpusConfig
from labnotes.electra import ElectraConfig, ElectraTask
from labnotes.experiments.electra import HybridTask
from labnotes.mlm import IGNORE, MLMConfig, MLMTask
from labnotes.nsp import NSPTask
from labnotes.pairs import PairConfig
from labnotes.sop import SOPTask
from labnotes.spanbert import SpanBERTConfig, SpanBERTTask
from labnotes.training import TrainConfig, share_of_step, step_totals
from labnotes.transformer import EncoderConfig
from labnotes.xlnet import XLNetConfig, XLNetTask
from tests.test_cli import write_small_corpus

FILL = {"input_ids": 0, "labels": IGNORE, "segment_ids": 0, "padding_mask": False,
        "special_tokens_mask": True, "noise": 0.5, "ranks": -1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = write_small_corpus(tmp_path_factory.mktemp("corpus") / "small.txt", documents=200)
    return CorpusConfig(data=str(data), seq_len=32, vocab_size=400)


def tiny(**changes) -> dict:
    return {"model": EncoderConfig(dim=32, ffn_dim=64, layers=1, heads=2, dropout=0.0, **changes),
            "train": TrainConfig(steps=2, batch_size=6, progress=False)}


def build(name: str, corpus: CorpusConfig):
    if name == "mlm":
        return MLMTask(MLMConfig(corpus=corpus, **tiny()))
    if name in ("nsp", "sop"):
        config = PairConfig(corpus=corpus, eval_pairs=10, **tiny(num_segments=2))
        return (NSPTask if name == "nsp" else SOPTask)(config)
    if name == "spanbert":
        return SpanBERTTask(SpanBERTConfig(corpus=corpus, eval_blocks=16, **tiny()))
    if name == "bart":
        return BARTTask(BARTConfig(corpus=corpus, eval_examples=16, **tiny()))
    if name == "xlnet":
        return XLNetTask(XLNetConfig(corpus=corpus, eval_blocks=16, **tiny()))
    config = ElectraConfig(corpus=corpus, eval_blocks=16, warm_start_steps=0, **tiny())
    return ElectraTask(config) if name == "electra" else HybridTask(config, name)


def concatenate(batches: list[dict]) -> dict:
    """One batch from several, padded to the longest (padding changes no real position)."""
    combined, rows = {}, [0] + [len(batch["input_ids"]) for batch in batches][:-1]
    for key in batches[0]:
        parts = [batch[key] for batch in batches]
        if key == "spans":  # SpanBERT's spans: (row, start, end), rows counted from the top
            offsets = torch.tensor(rows).cumsum(0)
            parts = [part + torch.tensor([offset, 0, 0]) for part, offset in zip(parts, offsets)]
        if parts[0].dim() == 2 and key in FILL:
            width = max(part.shape[1] for part in parts)
            parts = [F.pad(part, (0, width - part.shape[1]), value=FILL[key]) for part in parts]
        combined[key] = torch.cat(parts)
    return combined


def gradients(task, loss) -> list[torch.Tensor]:
    task.model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in task.model.parameters() if p.grad is not None]


PAPERS = ["mlm", "nsp", "sop", "spanbert", "electra", "electra_15", "replace_mlm",
          "all_tokens_mlm", "xlnet", "bart"]


@pytest.mark.parametrize("name", PAPERS)
def test_two_micro_batches_give_the_gradient_of_one_large_batch(name, corpus):
    task = build(name, corpus)
    batches = [task.make_batch(0, torch.Generator().manual_seed(0))]
    for step in range(1, 50):  # a second micro-batch with other counts than the first
        batches[1:] = [task.make_batch(step, torch.Generator().manual_seed(step))]
        if task.loss_counts(batches[1]) != task.loss_counts(batches[0]):
            break
    counts = [task.loss_counts(batch) for batch in batches]
    assert counts[0] != counts[1], "the micro-batches must differ in size for the test to bite"
    totals = step_totals(task, batches)
    torch.manual_seed(0)
    accumulated = sum(task.loss(task.model, batch, totals)[0] for batch in batches)
    torch.manual_seed(0)
    large = task.loss(task.model, concatenate(batches))[0]
    assert accumulated.item() == pytest.approx(large.item(), rel=1e-5)
    for mine, theirs in zip(gradients(task, accumulated), gradients(task, large)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    # the average of the two means is not the large batch's loss (what the loop did before)
    naive = sum(task.loss(task.model, batch)[0] for batch in batches) / 2
    assert abs(naive.item() - large.item()) > 1e-6


def test_share_of_step_is_the_identity_for_one_micro_batch():
    mean = torch.tensor(2.5, requires_grad=True)
    assert share_of_step(mean, "mlm", 3, None) is mean
    assert share_of_step(mean, "mlm", 3, {"mlm": 12}).item() == pytest.approx(2.5 * 3 / 12)
    assert share_of_step(mean, "mlm", 0, {"mlm": 0}).item() == 0.0
