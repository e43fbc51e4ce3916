"""SpanBERT: the span sampler's invariants (hypothesis), its length distribution and rate, the
span boundary objective's indices and leak test, a short `labnotes train spanbert`, and the
experiment's measures (NLL of hidden tokens, the sibling gap, NLL by span length and position,
block-bootstrap intervals) on hand-built cases, and its tables."""

import json
import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from labnotes.cli import main
from labnotes.data import Blocks
from labnotes.experiments.common import redraw
from labnotes.experiments import spanbert as experiment
from labnotes.experiments.spanbert import (ARMS, CHECKPOINTS, STEPS, arm_config,
                                          held_out_sets, interval, measure, paired_differences,
                                          recovery_scores, sibling_cloze, span_profile,
                                          span_recovery_set, token_nll, unigram_scorer)
from labnotes.mlm import IGNORE
from labnotes.spanbert import (SpanBERTConfig, SpanBERTModel, SpanKind, mask_spans,
                               span_boundary_targets, span_kind, span_length_distribution)
from labnotes.training import read_metrics
from labnotes.transformer import EncoderConfig
from tests.test_cli import TINY, write_small_corpus

PAD, CLS, SEP, MASK, NUM_SPECIAL = 0, 2, 3, 4, 5
VOCAB = 500
HUGE_VOCAB = 10**6  # random replacements (almost) never equal the original token


def make_blocks(seed: int, batch: int, seq_len: int, *, two_segments: bool = False,
                with_cls: bool = True, max_word_tokens: int = 3, min_real: int = 1):
    """Rows like labnotes' blocks: [CLS] words [SEP] [PAD]..., word ids -1 on specials.

    Rows have random real lengths; words are 1..max_word_tokens tokens; optionally a [SEP] in
    the middle (two segments) and optionally no [CLS] (a span may then touch the row's start)."""
    rng = random.Random(seed)
    ids = [[PAD] * seq_len for _ in range(batch)]
    word_ids = [[-1] * seq_len for _ in range(batch)]
    for row in range(batch):
        start = 1 if with_cls else 0
        if with_cls:
            ids[row][0] = CLS
        end = rng.randint(min(start + min_real, seq_len - 1), seq_len - 1)  # the [SEP] position
        middle = rng.randint(start + 1, end - 1) if two_segments and end - start > 2 else -1
        word, left = -1, 0
        for position in range(start, end):
            if position == middle:
                ids[row][position], left = SEP, 0
                continue
            if left == 0:
                word, left = word + 1, rng.randint(1, max_word_tokens)
            ids[row][position] = rng.randrange(NUM_SPECIAL, VOCAB)
            word_ids[row][position] = word
            left -= 1
        ids[row][end] = SEP
    ids, word_ids = torch.tensor(ids), torch.tensor(word_ids)
    return ids, word_ids == -1, word_ids


def span_word_count(word_ids, row, first, last):
    return len(set(word_ids[row, first:last + 1].tolist()))


def shown_kind(shown, original):
    """The SpanKind a hidden token was shown as (a random token never equals the original
    with HUGE_VOCAB)."""
    if shown == MASK:
        return SpanKind.MASK
    return SpanKind.UNCHANGED if shown == original else SpanKind.RANDOM


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 6), seq_len=st.integers(3, 48),
       rate=st.floats(0.0, 1.0), per_row=st.booleans(), two_segments=st.booleans(),
       with_cls=st.booleans(), mask_token_prob=st.sampled_from([0.0, 0.5, 0.8, 1.0]))
def test_span_masking_invariants(seed, batch, seq_len, rate, per_row, two_segments, with_cls,
                                 mask_token_prob):
    ids, special, word_ids = make_blocks(seed, batch, seq_len, two_segments=two_segments,
                                         with_cls=with_cls)
    random_prob = (1 - mask_token_prob) / 2

    def run():
        return mask_spans(ids, special, vocab_size=HUGE_VOCAB, whole_word_ids=word_ids, rate=rate,
                          mask_token_prob=mask_token_prob, random_token_prob=random_prob,
                          budget_per_row=per_row, generator=torch.Generator().manual_seed(seed))

    inputs, labels, spans = run()
    selected = labels != IGNORE
    assert inputs.shape == labels.shape == ids.shape and inputs.dtype == labels.dtype == ids.dtype
    assert spans.dtype == torch.long and spans.shape[1:] == (3,)
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])

    # the spans cover exactly the selected tokens, never a special token (nor padding)
    covered = torch.zeros_like(selected)
    for row, first, last in spans.tolist():
        assert 0 <= first <= last < seq_len
        assert not covered[row, first:last + 1].any(), "spans overlap"
        covered[row, first:last + 1] = True
        assert not special[row, first:last + 1].any(), "a span contains a special token"
        # whole words: the neighbours outside the span belong to other words (or are specials)
        if first > 0 and not special[row, first - 1]:
            assert word_ids[row, first - 1] != word_ids[row, first]
        if last + 1 < seq_len and not special[row, last + 1]:
            assert word_ids[row, last + 1] != word_ids[row, last]
        # the 80/10/10 decision is one per span
        shown, original = inputs[row, first:last + 1], ids[row, first:last + 1]
        kinds = {shown_kind(s, o) for s, o in zip(shown.tolist(), original.tolist())}
        assert len(kinds) == 1, f"mixed treatment inside one span: {kinds}"
        if mask_token_prob == 1.0:
            assert kinds == {SpanKind.MASK}
    assert torch.equal(covered, selected)
    # spans never touch: the token after a span is never hidden
    ordered = spans.tolist()
    assert ordered == sorted(ordered)
    for (row_a, _, last_a), (row_b, first_b, _) in zip(ordered, ordered[1:]):
        if row_a == row_b:
            assert first_b > last_a + 1, "two spans touch"
    # never more than the budget (15% of the real tokens, rounded up at most)
    real = (~special).sum(1)
    if per_row:
        assert (selected.sum(1) <= torch.floor(rate * real) + 1).all()
    else:
        assert selected.sum() <= math.floor(rate * int(real.sum())) + 1
    # determinism under a seeded generator
    again = run()
    assert all(torch.equal(a, b) for a, b in zip(again, (inputs, labels, spans)))


def test_span_lengths_follow_the_clipped_geometric():
    lengths = []
    for seed in range(4):
        ids, special, word_ids = make_blocks(seed, 64, 512, max_word_tokens=2, min_real=400)
        _, _, spans = mask_spans(ids, special, vocab_size=VOCAB, whole_word_ids=word_ids,
                                 generator=torch.Generator().manual_seed(seed))
        lengths += [span_word_count(word_ids, row, first, last)
                    for row, first, last in spans.tolist()]
    observed = torch.bincount(torch.tensor(lengths), minlength=11)[1:].double()
    assert observed.sum() > 1500 and len(observed) == 10, "spans are at most 10 words"
    expected = torch.tensor(span_length_distribution(0.2, 10), dtype=torch.double) * observed.sum()
    statistic = (((observed - expected) ** 2) / expected).sum().item()
    assert statistic < chi2.ppf(1 - 1e-6, df=9), (observed.tolist(), expected.tolist())
    assert abs(sum(lengths) / len(lengths) - 3.797) < 0.25


def test_the_chi_square_check_can_fail():
    """The same check rejects lengths drawn with the wrong p (0.3, SpanBERT's argparse default)."""
    ids, special, word_ids = make_blocks(0, 64, 512, max_word_tokens=2, min_real=400)
    _, _, spans = mask_spans(ids, special, vocab_size=VOCAB, whole_word_ids=word_ids,
                             geometric_p=0.3,
                             generator=torch.Generator().manual_seed(0))
    lengths = [span_word_count(word_ids, row, first, last) for row, first, last in spans.tolist()]
    observed = torch.bincount(torch.tensor(lengths), minlength=11)[1:].double()
    expected = torch.tensor(span_length_distribution(0.2, 10), dtype=torch.double) * observed.sum()
    assert (((observed - expected) ** 2) / expected).sum().item() > chi2.ppf(1 - 1e-6, df=9)


def test_masked_fraction_is_15_percent_of_the_tokens():
    # batch budget: every batch is within one word of 15%
    for seed in range(10):
        ids, special, word_ids = make_blocks(seed, 64, 64)
        _, labels, _ = mask_spans(ids, special, vocab_size=VOCAB, whole_word_ids=word_ids,
                                  generator=torch.Generator().manual_seed(seed))
        real = int((~special).sum())
        assert abs(int((labels != IGNORE).sum()) - 0.15 * real) <= 3, seed
    # per-row budget (the paper's): close to 15% on average over many rows
    ids, special, word_ids = make_blocks(99, 400, 128, max_word_tokens=1)
    _, labels, _ = mask_spans(ids, special, vocab_size=VOCAB, whole_word_ids=word_ids,
                              budget_per_row=True,
                              generator=torch.Generator().manual_seed(5))
    fraction = int((labels != IGNORE).sum()) / int((~special).sum())
    assert abs(fraction - 0.15) < 0.01


def test_replacement_rates_per_span():
    ids, special, word_ids = make_blocks(1, 256, 256)
    inputs, labels, spans = mask_spans(ids, special, vocab_size=HUGE_VOCAB, whole_word_ids=word_ids,
                                       generator=torch.Generator().manual_seed(2))
    counts = {kind: 0 for kind in (SpanKind.MASK, SpanKind.UNCHANGED, SpanKind.RANDOM)}
    for row, first, last in spans.tolist():
        counts[shown_kind(inputs[row, first], ids[row, first])] += 1
    n = len(spans)
    for kind, p in ((SpanKind.MASK, 0.8), (SpanKind.UNCHANGED, 0.1), (SpanKind.RANDOM, 0.1)):
        assert abs(counts[kind] / n - p) < 5 * math.sqrt(p * (1 - p) / n), counts


def test_span_kind_cuts_the_unit_interval_80_10_10():
    kinds = [span_kind(u, 0.8, 0.1) for u in (0.0, 0.79, 0.8, 0.89, 0.9, 0.999)]
    assert kinds == [SpanKind.MASK, SpanKind.MASK, SpanKind.RANDOM, SpanKind.RANDOM,
                     SpanKind.UNCHANGED, SpanKind.UNCHANGED]
    assert span_kind(0.5, 0.0, 0.0) == SpanKind.UNCHANGED


def test_without_word_ids_every_token_is_a_word():
    ids, special, _ = make_blocks(3, 8, 64)
    _, labels, spans = mask_spans(ids, special, vocab_size=VOCAB,
                                  generator=torch.Generator().manual_seed(0))
    assert len(spans) > 0
    assert torch.equal((labels != IGNORE).sum(), (spans[:, 2] - spans[:, 1] + 1).sum())


def test_bad_arguments_are_clear_errors():
    ids, special, word_ids = make_blocks(0, 2, 16)
    with pytest.raises(ValueError, match="whole_word_ids must be"):
        mask_spans(ids, special, vocab_size=VOCAB, whole_word_ids=word_ids[:, :5])
    with pytest.raises(ValueError, match="geometric_p"):
        mask_spans(ids, special, vocab_size=VOCAB, geometric_p=0.0)
    with pytest.raises(ValueError, match="special_tokens_mask"):
        mask_spans(ids[0], special[0], vocab_size=VOCAB)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), with_cls=st.booleans(), two_segments=st.booleans())
def test_boundaries_are_outside_the_span_inside_the_sequence_and_never_hidden(seed, with_cls,
                                                                               two_segments):
    ids, special, word_ids = make_blocks(seed, 6, 40, with_cls=with_cls, two_segments=two_segments)
    _, labels, spans = mask_spans(ids, special, vocab_size=VOCAB, whole_word_ids=word_ids, rate=0.3,
                                  generator=torch.Generator().manual_seed(seed))
    padding_mask = ids != PAD
    targets = span_boundary_targets(spans, labels, padding_mask, max_positions=64)
    assert ((targets.left >= 0) & (targets.right < ids.shape[1])).all()
    assert ((targets.left < targets.position) & (targets.position < targets.right)).all()
    assert (labels[targets.rows, targets.left] == IGNORE).all()
    assert (labels[targets.rows, targets.right] == IGNORE).all()
    assert padding_mask[targets.rows, targets.left].all()
    assert padding_mask[targets.rows, targets.right].all()
    assert torch.equal(targets.labels, ids[targets.rows, targets.position])
    # a span is left out only when a boundary would fall outside the sequence; at the edge of
    # a block with [CLS] and [SEP] the boundary *is* [CLS] or [SEP]
    kept = {(r, s) for r, s in zip(targets.rows.tolist(), (targets.left + 1).tolist())}
    for row, first, last in spans.tolist():
        inside = first >= 1 and last + 1 < ids.shape[1]
        assert ((row, first) in kept) == inside
        if (row, first) in kept and with_cls and first == 1:
            assert ids[row, first - 1] == CLS


def test_sbo_positions_are_capped():
    labels = torch.arange(20).unsqueeze(0)
    targets = span_boundary_targets(torch.tensor([[0, 2, 15]]), labels, None, max_positions=5)
    assert targets.offset.tolist() == [0, 1, 2, 3, 4]
    assert targets.position.tolist() == [2, 3, 4, 5, 6]
    assert set(targets.left.tolist()) == {1} and set(targets.right.tolist()) == {16}


def tiny_model(vocab=VOCAB, boundary_objective=True):
    torch.manual_seed(0)
    encoder = EncoderConfig(vocab_size=vocab, max_len=64, dim=32, layers=2, heads=2, ffn_dim=64)
    model = SpanBERTModel(encoder,
                          boundary_objective=boundary_objective)
    return model.eval()


def leak_check(masker=mask_spans):
    """Mask with every span all [MASK]; replace the original tokens of every span; mask again
    with the same generator. Returns (spans, outputs before, outputs after)."""
    model = tiny_model()
    ids, special, word_ids = make_blocks(7, 8, 48)

    def predictions(token_ids):
        inputs, labels, spans = masker(token_ids, special, vocab_size=VOCAB,
                                       whole_word_ids=word_ids, rate=0.3,
                                       mask_token_prob=1.0, random_token_prob=0.0,
                                       generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            return spans, model.span_losses(inputs, labels, token_ids != PAD, spans)

    spans, before = predictions(ids)
    changed = ids.clone()
    for row, first, last in spans.tolist():
        # another ordinary token
        shifted = (ids[row, first:last + 1] - NUM_SPECIAL + 17) % (VOCAB - NUM_SPECIAL)
        changed[row, first:last + 1] = NUM_SPECIAL + shifted
    assert (changed != ids).sum() == (spans[:, 2] - spans[:, 1] + 1).sum()
    spans_again, after = predictions(changed)
    assert torch.equal(spans, spans_again), "the spans do not depend on the tokens"
    assert len(before.sbo_targets.labels) > 20
    assert not torch.equal(before.sbo_targets.labels, after.sbo_targets.labels)
    return spans, before, after


def test_leak_changing_a_fully_masked_span_does_not_move_its_predictions():
    _, before, after = leak_check()
    assert torch.equal(before.sbo_logits, after.sbo_logits)
    assert torch.equal(before.mlm_logits, after.mlm_logits)


def test_the_leak_test_can_fail():
    """A masker with an off-by-one (the last token of each span stays visible) is caught."""

    def leaky_mask_spans(input_ids, *args, **kwargs):
        inputs, labels, spans = mask_spans(input_ids, *args, **kwargs)
        inputs[spans[:, 0], spans[:, 2]] = input_ids[spans[:, 0], spans[:, 2]]
        return inputs, labels, spans

    _, before, after = leak_check(leaky_mask_spans)
    assert not torch.equal(before.sbo_logits, after.sbo_logits)


def test_span_recovery_set_hides_interior_whole_word_spans():
    ids, special, word_ids = make_blocks(4, 30, 64, max_word_tokens=2)
    recovery_set = span_recovery_set(Blocks(ids, word_ids, special), lengths=(3, 6))
    assert len(recovery_set["input_ids"]) > 20
    for example, (row, first, last) in enumerate(recovery_set["spans"].tolist()):
        assert row == example
        block = int(recovery_set["block"][example])
        hidden = recovery_set["labels"][example] != IGNORE
        assert hidden.nonzero().flatten().tolist() == list(range(first, last + 1))
        assert (recovery_set["input_ids"][example, first:last + 1] == MASK).all()
        hidden_ids = recovery_set["labels"][example, first:last + 1]
        assert torch.equal(hidden_ids, ids[block, first:last + 1])
        assert span_word_count(word_ids, block, first, last) == recovery_set["span_words"][example]
        left, right = word_ids[block, first - 1], word_ids[block, last + 1]
        assert left not in (-1, word_ids[block, first]), "a whole real word on the left"
        assert right not in (-1, word_ids[block, last]), "a whole real word on the right"
    oracle = recovery_set["labels"] != IGNORE  # right everywhere
    scores = recovery_scores(oracle, recovery_set)
    assert scores["token_accuracy"] == 1.0 and scores["exact_match"] == 1.0
    assert set(scores["by_length"]) == {"3", "6"}


def test_train_spanbert_lowers_mlm_and_sbo_losses(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    code = main(["train", "spanbert", "--data", str(data), "--steps", "300", "--batch-size", "32",
                 "--seq-len", "32", "--out", str(out), "--set", "eval_every=100",
                 "--set", "lr=5e-3", *TINY])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.3
    assert evals[-1]["eval_sbo_loss"] < evals[0]["eval_sbo_loss"] - 0.3
    assert summary["eval_sbo_loss"] < summary["baseline_entropy"]
    assert summary["eval_sbo_accuracy"] > summary["baseline_accuracy"]
    train_rows = [row for row in read_metrics(out / "metrics.jsonl") if "sbo_loss" in row]
    assert train_rows[-1]["sbo_loss"] < train_rows[0]["sbo_loss"]
    assert train_rows[-1]["mlm_loss"] < train_rows[0]["mlm_loss"]
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()


def test_bad_settings_are_clear_errors(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=20)
    assert main(["train", "spanbert", "--data", str(data), "--set", "masking=spans",
                 "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "masking='spans': choose one of token, word, span" in capsys.readouterr().err
    assert main(["train", "spanbert", "--data", str(data), "--set", "masking=token",
                 "--out", str(tmp_path / "b"), *TINY]) == 1
    assert "boundary_objective needs masking=span" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_experiment_arms_are_the_page_default_with_masking_set():
    for changes in ARMS.values():
        config = arm_config(changes, seed=1, quick=False, progress=False)
        assert (config.masking, config.boundary_objective) == (changes["masking"],
                                                               changes["boundary_objective"])
        assert config.train.steps == config.train.eval_every == STEPS and config.train.seed == 1
        assert config.train.checkpoint_every * CHECKPOINTS == STEPS
        assert config.train.keep_checkpoints >= CHECKPOINTS
        assert config.eval_blocks == SpanBERTConfig().eval_blocks
    quick = arm_config(ARMS["geometric spans + SBO"], seed=0, quick=True, progress=False)
    assert (quick.train.steps, quick.eval_blocks) == (20, 64)


# A fake model whose log-probabilities we set: every real token is WORD, and the MLM head's
# logit for WORD is the number of visible neighbours (left and right) of the hidden position;
# the SBO head's logit for WORD is the position inside the span (0 = first). All other logits
# are 0, so the NLL of WORD with logit f is log(e^f + V - 1) - f.
WORD, FAKE_VOCAB = 7, 10


def fake_nll(logit):
    return math.log(math.exp(logit) + FAKE_VOCAB - 1) - logit


class FakeEncoder(torch.nn.Module):
    def forward(self, ids, padding_mask=None):
        visible = (ids == WORD).float()
        left = torch.nn.functional.pad(visible, (1, 0))[:, :-1]
        right = torch.nn.functional.pad(visible, (0, 1))[:, 1:]
        return (left + right)[..., None]  # [B, T, 1]


class FakeHead(torch.nn.Module):
    def forward(self, hidden):  # [N, 1] -> [N, V]
        logits = torch.zeros(len(hidden), FAKE_VOCAB)
        logits[:, WORD] = hidden[:, 0]
        return logits


class FakeBoundaryHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.position = torch.nn.Embedding(16, 1)

    def forward(self, hidden, targets):
        logits = torch.zeros(len(targets.labels), FAKE_VOCAB)
        logits[:, WORD] = targets.offset.float()
        return logits


class FakeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.head, self.boundary_head = FakeEncoder(), FakeHead(), FakeBoundaryHead()


def fake_blocks(word_sizes, copies=3, seq_len=16):
    """`copies` identical rows: [CLS], words of the given sizes (all WORD), [SEP], padding."""
    ids, word_ids = [CLS], [-1]
    for word, size in enumerate(word_sizes):
        ids += [WORD] * size
        word_ids += [word] * size
    ids, word_ids = ids + [SEP], word_ids + [-1]
    ids += [PAD] * (seq_len - len(ids))
    word_ids += [-1] * (seq_len - len(word_ids))
    ids, word_ids = torch.tensor([ids] * copies), torch.tensor([word_ids] * copies)
    return Blocks(ids, word_ids, word_ids == -1)


def test_the_sibling_gap_by_hand():
    blocks = fake_blocks([1, 3, 1, 2, 1])  # two split words: 3 pieces (tokens 2-4), 2 (6-7)
    cloze = sibling_cloze(blocks, seed=5)
    device = torch.device("cpu")
    for row in range(len(blocks)):
        chosen = (cloze["labels"][row] != IGNORE).nonzero().flatten().tolist()
        assert len(chosen) == 2 and 2 <= chosen[0] <= 4 and 6 <= chosen[1] <= 7
        assert (cloze["visible"][row] == MASK).nonzero().flatten().tolist() == chosen
        assert (cloze["hidden"][row] == MASK).nonzero().flatten().tolist() == [2, 3, 4, 6, 7]
    model = FakeModel()
    visible = token_nll(model, cloze["visible"], cloze["labels"], cloze["padding_mask"], device)
    hidden = token_nll(model, cloze["hidden"], cloze["labels"], cloze["padding_mask"], device)
    # visible siblings: both neighbours of the one hidden piece are visible words
    chosen = cloze["labels"] != IGNORE
    expected = torch.full((6,), fake_nll(2), dtype=torch.float64)
    assert torch.allclose(visible["mlm"][chosen], expected)
    # whole word hidden: an edge piece has one visible neighbour, the middle piece none
    neighbours = {2: 1, 3: 0, 4: 1, 6: 1, 7: 1}
    expected_gaps = [fake_nll(neighbours[position]) - fake_nll(2)
                     for row, position in chosen.nonzero().tolist()]
    gap = interval(hidden["mlm"] - visible["mlm"], chosen, cloze["block"])
    assert gap["mean"] == pytest.approx(sum(expected_gaps) / len(expected_gaps))
    assert gap["mean"] > 0 and gap["tokens"] == 6 and gap["blocks"] == 3
    assert torch.isnan(visible["mlm"][~chosen]).all()
    assert not visible["correct"][~chosen].any()


def test_nll_by_span_length_and_position_by_hand():
    blocks = fake_blocks([1] * 7)  # seven one-token words, so lengths in words are in tokens
    recovery_set = span_recovery_set(blocks, lengths=(1, 3))
    assert recovery_set["span_words"].tolist() == [1, 3] * 3
    scores = token_nll(FakeModel(), recovery_set["input_ids"], recovery_set["labels"],
                       recovery_set["padding_mask"], torch.device("cpu"), recovery_set["spans"])
    mlm, sbo = span_profile(scores["mlm"], recovery_set), span_profile(scores["sbo"], recovery_set)
    # MLM: a one-word span sees two visible neighbours; a three-word span 1, 0, 1
    assert mlm["by_length"]["1"]["mean"] == pytest.approx(fake_nll(2))
    assert mlm["by_length"]["3"]["mean"] == pytest.approx((2 * fake_nll(1) + fake_nll(0)) / 3)
    assert mlm["by_position"]["1"]["mean"] == pytest.approx((fake_nll(2) + fake_nll(1)) / 2)
    assert mlm["by_position"]["2"]["mean"] == pytest.approx(fake_nll(0))
    assert mlm["by_position"]["3"]["mean"] == pytest.approx(fake_nll(1))
    assert mlm["by_distance"]["1"]["mean"] == pytest.approx((fake_nll(2) + 2 * fake_nll(1)) / 3)
    assert mlm["by_distance"]["2"]["mean"] == pytest.approx(fake_nll(0))
    assert set(mlm["by_distance"]) == {"1", "2"} and set(mlm["by_position"]) == {"1", "2", "3"}
    assert mlm["all"]["mean"] == pytest.approx((fake_nll(2) + 2 * fake_nll(1) + fake_nll(0)) / 4)
    assert mlm["all"]["tokens"] == 12 and mlm["all"]["blocks"] == 3
    assert mlm["all"]["low"] == pytest.approx(mlm["all"]["mean"])  # identical blocks: no spread
    # SBO: the logit is the position inside the span, 0, 1, 2
    assert sbo["by_position"]["1"]["mean"] == pytest.approx(fake_nll(0))
    assert sbo["by_position"]["3"]["mean"] == pytest.approx(fake_nll(2))
    assert sbo["by_length"]["3"]["mean"] == pytest.approx(sum(map(fake_nll, (0, 1, 2))) / 3)


def test_interval_is_the_token_mean_over_blocks():
    values = torch.tensor([[1.0, 3.0, float("nan")], [10.0, 0.0, 0.0], [5.0, 5.0, 5.0]],
                          dtype=torch.float64)
    where = torch.tensor([[True, True, True], [True, False, False], [True, True, True]])
    block = torch.tensor([0, 1, 0])  # rows 0 and 2 come from one block
    result = interval(values, where, block)
    assert result["mean"] == pytest.approx((1 + 3 + 10 + 15) / 6)  # NaN never counts
    assert (result["tokens"], result["blocks"]) == (6, 2)
    assert result["low"] <= result["mean"] <= result["high"]
    assert interval(values, torch.zeros_like(where), block) == {}


def test_block_bootstrap_intervals_cover_a_known_mean():
    """100 simulated held-out sets: blocks of 1-12 tokens that share a block effect (so tokens
    are not independent); the true mean is 2.0. At least 90 of the 95% intervals cover it;
    resampling single tokens instead, as if they were independent, covers it far less often
    (in 30 of the sets)."""
    generator = torch.Generator().manual_seed(2026)
    covered, covered_by_tokens = 0, 0
    for dataset in range(100):
        blocks, width = 150, 12
        sizes = torch.randint(1, width + 1, (blocks,), generator=generator)
        where = torch.arange(width)[None, :] < sizes[:, None]
        effect = torch.randn(blocks, 1, generator=generator, dtype=torch.float64)
        values = 2.0 + effect + torch.randn(blocks, width, generator=generator,
                                            dtype=torch.float64)
        result = interval(values, where, torch.arange(blocks), seed=dataset)
        covered += result["low"] <= 2.0 <= result["high"]
        if dataset < 30:
            tokens = interval(values.reshape(-1, 1), where.reshape(-1, 1),
                              torch.arange(blocks * width), seed=dataset)
            covered_by_tokens += tokens["low"] <= 2.0 <= tokens["high"]
    assert 90 <= covered <= 99, covered  # 100 would hint at intervals too wide to mean much
    assert covered_by_tokens <= 25, covered_by_tokens  # of 30; about 64% expected


def test_measures_of_a_real_model_have_every_cell():
    ids, special, word_ids = make_blocks(3, 12, 40, max_word_tokens=3)
    sets = held_out_sets(Blocks(ids, word_ids, special), VOCAB)
    model, per_token = tiny_model(), {}
    point = measure(lambda i, labels, p, spans=None: token_nll(model, i, labels, p,
                                                                torch.device("cpu"), spans,
                                                                batch_size=5),
                    sets, detail=True, per_token=per_token)
    shifted = {key: values + 0.5 for key, values in per_token.items()}
    differences = paired_differences(shifted, per_token, sets)
    assert set(differences) == {"token_masked", "span_masked", "sibling_gap", "whole_spans"}
    for key, cell in differences.items():
        assert cell["mean"] == pytest.approx(0.5) and cell["low"] == pytest.approx(0.5)
    assert differences["whole_spans"]["tokens"] == point["spans"]["mlm"]["all"]["tokens"]
    assert set(point["spans"]) == {"mlm", "sbo"}
    for head in ("mlm", "sbo"):
        assert set(point["spans"][head]["by_length"]) == {"1", "2", "4", "6", "8"}
        assert 0 < point["spans"][head]["all"]["mean"] < 2 * math.log(VOCAB)
    assert point["sibling"]["gap"]["tokens"] == int((sets["sibling"]["labels"] != IGNORE).sum())
    assert point["token_masked"]["tokens"] == int((sets["masked"]["token"]["labels"]
                                                   != IGNORE).sum())
    assert 0.0 <= point["span_masked_accuracy"] <= 1.0


def fake_results():
    ids, special, word_ids = make_blocks(4, 10, 40, max_word_tokens=3)
    sets = held_out_sets(Blocks(ids, word_ids, special), VOCAB)
    log_q = torch.log_softmax(torch.linspace(0, 3, VOCAB, dtype=torch.float64), 0)
    unigram = measure(unigram_scorer(log_q), sets, detail=True)

    def arm_point(arm, step, detail):
        shift = 0.1 * list(ARMS).index(arm) + 1.0 / step
        scorer = unigram_scorer(log_q + shift)  # any numbers will do
        point = measure(scorer, sets, detail=detail)
        if ARMS[arm]["boundary_objective"]:
            point["spans"]["sbo"] = point["spans"]["mlm"]
        return {"step": step, **point}

    difference = {"mean": -0.25, "low": -0.5, "high": 0.0, "tokens": 9, "blocks": 3}
    runs = {arm: {"curve": [arm_point(arm, step, step == 20) for step in (10, 20)],
                  "downstream": {"score": {"mean": 0.6}},
                  "minus_token_masking": dict.fromkeys(
                      ("token_masked", "span_masked", "sibling_gap", "whole_spans"), difference)}
            for arm in ARMS}
    return {"runs": runs, "unigram": unigram, "steps": 20, "batch_size": 4, "seed": 0,
            "held_out": {"blocks": 10, "split_words": 7, "recovery_spans": 30,
                         "recovery_lengths": [1, 2, 4, 6, 8]}}


def test_results_table_and_figures_from_stored_numbers(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(fake_results(), sort_keys=True))
    redraw(experiment, tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "| word frequencies (unigram) |" in table
    assert "over 10 held-out blocks" in table and "each of the 7 held-out words" in table
    headline = table.split("\n\n")[1]  # title, headline table, ...
    rows = [line.split(" |")[0] for line in headline.splitlines() if line.startswith("| ")]
    assert rows == ["| model", "| word frequencies (unigram)"] + [f"| {arm}" for arm in ARMS], \
        "arms in the experiment's order, not alphabetical"
    assert "geometric spans + SBO, SBO head alone" in table
    assert "| whole-word masking | -0.250 [-0.500, 0.000] |" in table
    assert "| token masking (BERT) | -0.250" not in table  # no difference from itself
    assert "| 1 word | 2 words | 4 words | 6 words | 8 words | distance 1 |" in table
    assert "| token masking (BERT) | 10 |" in table and "| token masking (BERT) | 20 |" in table
    for figure in ("learning_curves.svg", "span_nll.svg"):
        assert (tmp_path / figure).read_text().startswith("<?xml")
