"""XLNet: targets and orders (hypothesis), the two masks, leak tests with twins that must move,
a brute-force equivalence of the two streams, Hugging Face's perm_mask convention, and a short
`labnotes train xlnet`."""

import json
import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labnotes.cli import main
from labnotes.training import read_metrics
from labnotes.transformer import EncoderConfig
from labnotes.xlnet import (PermutationLanguageModel, XLNetConfig, factorization_ranks,
                            random_targets, sample_spans, span_targets, stream_masks,
                            target_count, word_starts_of)
from tests.test_cli import TINY, write_small_corpus

PAD, CLS, SEP, NUM_SPECIAL = 0, 2, 3, 5
VOCAB = 50


def make_rows(seed: int, batch: int, seq_len: int, max_word_tokens: int = 3):
    """(ids, special, word ids) like labnotes' blocks: [CLS] words [SEP] words [SEP] [PAD]..."""
    rng = random.Random(seed)
    ids = torch.full((batch, seq_len), PAD)
    word_ids = torch.full((batch, seq_len), -1)
    for row in range(batch):
        real = rng.randint(3, seq_len)
        ids[row, 0] = CLS
        word, position, sep_at = 0, 1, rng.randint(2, real - 1) if real > 4 else None
        while position < real - 1:
            if position == sep_at:
                ids[row, position] = SEP
                position += 1
                continue
            for _ in range(rng.randint(1, max_word_tokens)):
                if position >= real - 1 or position == sep_at:
                    break
                ids[row, position] = rng.randrange(NUM_SPECIAL, VOCAB)
                word_ids[row, position] = word
                position += 1
            word += 1
        ids[row, real - 1] = SEP
    special = word_ids < 0
    return ids, special, word_ids


rows_strategy = st.tuples(st.integers(0, 10_000), st.integers(1, 8), st.integers(4, 80),
                          st.integers(1, 8), st.booleans())


@settings(max_examples=60, deadline=None)
@given(rows_strategy)
def test_targets_and_orders_keep_their_invariants(case):
    seed, batch, seq_len, k, spans = case
    ids, special, word_ids = make_rows(seed, batch, seq_len)
    predictable = ~special
    generator = torch.Generator().manual_seed(seed)
    if spans:
        targets = span_targets(predictable, word_starts_of(word_ids), k, generator)
    else:
        targets = random_targets(predictable, k, generator)
    ranks = factorization_ranks(targets, torch.Generator().manual_seed(seed + 1))
    assert targets.dtype == torch.bool and targets.shape == ids.shape
    assert not (targets & special).any(), "specials and padding are never targets"
    counts, real = targets.sum(1), predictable.sum(1)
    assert torch.equal(counts, target_count(predictable, k))
    for row in range(batch):  # round(n / K) targets, at least one where a row has a token
        assert counts[row] == min(real[row], max(1, round(real[row].item() / k)))
        row_ranks = ranks[row][targets[row]]
        assert sorted(row_ranks.tolist()) == list(range(int(counts[row])))  # a permutation
    assert (ranks[~targets] == -1).all()
    again = (span_targets(predictable, word_starts_of(word_ids), k,
                          torch.Generator().manual_seed(seed)) if spans
             else random_targets(predictable, k, torch.Generator().manual_seed(seed)))
    assert torch.equal(again, targets), "the same generator draws the same targets"


@settings(max_examples=40, deadline=None)
@given(rows_strategy)
def test_spans_are_contiguous_start_at_a_word_and_stay_inside_a_segment(case):
    seed, batch, seq_len, k, _ = case
    ids, special, word_ids = make_rows(seed, batch, seq_len)
    starts = word_starts_of(word_ids)
    goals = target_count(~special, k)
    spans = sample_spans(~special, starts, k, goals, torch.Generator().manual_seed(seed))
    assert not (spans & special).any()
    assert (spans.sum(1) <= goals).all()
    for row in range(batch):
        flags = spans[row].tolist() + [False]
        begin = None
        for position, flag in enumerate(flags):
            if flag and begin is None:
                begin = position
                assert starts[row, position], "a span begins at a word start"
            if not flag and begin is not None:
                assert 1 <= position - begin <= 5
                begin = None


def test_span_lengths_follow_one_over_l_and_cover_a_seventh():
    ids = torch.randint(NUM_SPECIAL, VOCAB, (64, 700))
    predictable = torch.ones_like(ids, dtype=torch.bool)
    starts = torch.ones_like(predictable)  # every piece a word: lengths are not cut by words
    goals = torch.full((64,), 10_000)  # no cap
    spans = sample_spans(predictable, starts, 6, goals, torch.Generator().manual_seed(0))
    lengths = []
    for row in spans.tolist():
        run = 0
        for flag in row + [False]:
            if flag:
                run += 1
            elif run:
                lengths.append(run)
                run = 0
    lengths = lengths[:-64] if len(lengths) > 64 else lengths  # a row's last span may be cut
    counts = torch.bincount(torch.tensor(lengths), minlength=6)[1:].double()
    expected = 1 / torch.arange(1, 6, dtype=torch.double)
    expected = expected / expected.sum() * counts.sum()
    assert counts.sum() > 1000
    assert ((counts - expected).abs() < 5 * expected.sqrt() + 5).all(), (counts, expected)
    coverage = spans.float().mean().item()  # each window of K·L plus the span: about 1/(K+1)
    assert abs(coverage - 1 / 7) < 0.01


def test_masks_follow_the_ranks():
    ranks = torch.tensor([[-1, 1, -1, 0, -1, 2, -1]])  # [CLS] and padding carry -1 too
    padding = torch.tensor([[True] * 6 + [False]])
    content, query = stream_masks(ranks, padding)
    eye = torch.eye(7, dtype=torch.bool)
    context = (ranks[0] == -1) & padding[0]
    assert torch.equal(content[0][~(ranks[0] >= 0)][:, ranks[0] >= 0],
                       torch.zeros(4, 3, dtype=torch.bool)), "context never sees a target"
    for i in (0, 2, 4):
        assert torch.equal(content[0, i], context), "context sees all context, both ways"
    assert query[0, 3].tolist() == context.tolist()  # rank 0: only the context
    assert query[0, 1].tolist() == (context | (ranks[0] == 0)).tolist()
    assert query[0, 5].tolist() == (context | (ranks[0] == 0) | (ranks[0] == 1)).tolist()
    targets = ranks[0] >= 0
    assert torch.equal(content[0][targets], (query[0] | eye)[targets])  # content = query + self
    assert not query[0].diagonal().any()
    assert not content[0][:, 6].any() and not query[0][:, 6].any(), "padding is hidden"


# ---------------------------------------------------------------- the model: leaks and equivalence

CONFIG = EncoderConfig(vocab_size=VOCAB, max_len=16, dim=32, heads=4, ffn_dim=64, layers=3,
                       dropout=0.0)


def small_model(seed: int = 0) -> PermutationLanguageModel:
    torch.manual_seed(seed)
    model = PermutationLanguageModel(CONFIG).double().eval()
    with torch.no_grad():  # a trained-looking model: biases and the query vector away from 0
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def case(seed: int = 0, seq_len: int = 12):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIAL, VOCAB, (2, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = CLS, SEP
    targets = torch.zeros_like(ids, dtype=torch.bool)
    targets[0, [2, 3, 7, 9]] = True
    targets[1, [1, 5, 6]] = True
    return ids, factorization_ranks(targets, generator)


def query_logits(model, ids, ranks, padding=None) -> dict[tuple[int, int], torch.Tensor]:
    """Logits at each target, keyed by (row, position)."""
    with torch.no_grad():
        logits, (slots, valid), _ = model(ids, ranks, padding)
    keys = [(row, int(slots[row, m])) for row in range(len(ids))
            for m in range(slots.shape[1]) if valid[row, m]]
    return dict(zip(keys, logits))


def changed(ids, row, position):
    other = ids.clone()
    other[row, position] = NUM_SPECIAL + (int(ids[row, position]) - NUM_SPECIAL + 7) % (
        VOCAB - NUM_SPECIAL)
    return other


def test_a_target_query_ignores_its_own_token_and_every_later_one_but_not_earlier_ones():
    model = small_model()
    ids, ranks = case()
    before = query_logits(model, ids, ranks)
    for (row, position), logits in before.items():
        rank = int(ranks[row, position])
        for other in range(ids.shape[1]):
            after = query_logits(model, changed(ids, row, other), ranks)[(row, position)]
            moved = not torch.allclose(after, logits, atol=1e-12, rtol=0)
            later_or_self = int(ranks[row, other]) >= rank
            if later_or_self:
                assert not moved, f"target {position} (rank {rank}) sees position {other}"
            else:  # the twin: context and earlier targets must move it
                assert moved, f"target {position} does not read earlier position {other}"


def test_content_sees_itself_and_no_context_state_sees_a_target():
    model = small_model()
    ids, ranks = case()
    with torch.no_grad():
        content = model(ids, ranks, content=True)[2]
    for row in range(2):
        for position in range(ids.shape[1]):
            with torch.no_grad():
                after = model(changed(ids, row, position), ranks, content=True)[2]
            moved = ~torch.isclose(after[row], content[row], atol=1e-12, rtol=0).all(-1)  # [T]
            assert moved[position], "a position's content state reads its own token"
            if ranks[row, position] >= 0:  # a target changed: no context state may move
                assert not moved[ranks[row] == -1].any()
            else:  # the twin: a context token moves every state of the row
                assert moved.all()


def test_padding_changes_no_output():
    model = small_model()
    ids, ranks = case()
    padded = torch.cat([ids, torch.full((2, 4), PAD)], dim=1)
    padded_ranks = torch.cat([ranks, torch.full((2, 4), -1)], dim=1)
    plain = query_logits(model, ids, ranks)
    padding = padded != PAD
    with_pad = query_logits(model, padded, padded_ranks, padding)
    for key, logits in plain.items():
        torch.testing.assert_close(with_pad[key], logits, atol=1e-10, rtol=0)
    garbage = padded.clone()
    garbage[:, -4:] = 9
    for key, logits in query_logits(model, garbage, padded_ranks, padding).items():
        torch.testing.assert_close(logits, with_pad[key], atol=1e-10, rtol=0)
    # the twin: without the padding mask the garbage is read
    unmasked = query_logits(model, garbage, padded_ranks)
    assert any(not torch.allclose(unmasked[key], with_pad[key]) for key in with_pad)


def brute_force(model: PermutationLanguageModel, ids, ranks) -> dict[tuple[int, int], torch.Tensor]:
    """Every state computed one position at a time from the slice of states it may see, with
    no mask at all: content j reads {rank <= rank j}, query i reads {rank < rank i}."""
    out = {}
    embeddings = model.encoder.embeddings
    with torch.no_grad():
        for row in range(len(ids)):
            r = ranks[row].tolist()
            h = embeddings(ids[row:row + 1])  # [1, T, D]
            targets = [i for i, rank in enumerate(r) if rank >= 0]
            g = {i: model.query_start + embeddings.position.weight[i] for i in targets}
            for block in model.encoder.blocks:
                g = {i: block(g[i].view(1, 1, -1), None, context=h[:, [j for j in range(len(r))
                                                                      if r[j] < r[i]]])[0, 0]
                     for i in targets}
                h = torch.cat([block(h[:, j:j + 1], None,
                                     context=h[:, [m for m in range(len(r)) if r[m] <= r[j]]])
                               for j in range(len(r))], dim=1)
            for i in targets:
                out[(row, i)] = model.head(model.encoder.final_norm(g[i]))
    return out


def test_two_streams_equal_a_brute_force_computation_per_target():
    model = small_model()
    ids, ranks = case()
    expected = brute_force(model, ids, ranks)
    got = query_logits(model, ids, ranks)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-10, rtol=0)


def test_the_equivalence_check_can_fail():
    """A model whose query stream may see itself (a leak) differs from the brute force."""
    model = small_model()
    ids, ranks = case()
    expected = brute_force(model, ids, ranks)
    import labnotes.xlnet as page

    original = page.stream_masks
    leaky = lambda r, p=None: (lambda c, q: (c, q | torch.eye(r.shape[1], dtype=torch.bool)))(
        *original(r, p))
    page.stream_masks = leaky
    try:
        got = query_logits(model, ids, ranks)
    finally:
        page.stream_masks = original
    assert any(not torch.allclose(got[key], expected[key], atol=1e-6) for key in expected)


def test_training_uses_every_weight_and_the_query_vector():
    model = PermutationLanguageModel(CONFIG)
    ids, ranks = case()
    logits, (slots, valid), _ = model(ids, ranks)
    answers = ids.gather(1, slots)[valid]
    torch.nn.functional.cross_entropy(logits, answers).backward()
    assert model.query_start.grad.abs().sum() > 0
    last = model.encoder.blocks[-1]
    assert last.feed_forward.up.weight.grad.abs().sum() > 0  # the query stream runs every block
    assert model.encoder.embeddings.token.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- Hugging Face's perm_mask

def official_perm_mask(ranks: torch.Tensor) -> torch.Tensor:
    """zihangdai/xlnet's polarity: 1 = may NOT attend; the query mask with targets not seeing
    themselves, from which the content mask re-opens the diagonal."""
    content, query = stream_masks(ranks)
    targets = ranks >= 0
    allowed = torch.where(targets[:, :, None], query, content)
    return (~allowed).float()


@pytest.mark.parametrize("flip", [False, True])
def test_our_masks_in_hugging_face_xlnet_leak_nothing_and_the_flipped_polarity_does(flip):
    transformers = pytest.importorskip("transformers")
    config = transformers.XLNetConfig(vocab_size=VOCAB, d_model=32, n_layer=2, n_head=4,
                                      d_inner=64, dropout=0.0, mem_len=None)
    torch.manual_seed(0)
    model = transformers.XLNetLMHeadModel(config).eval()  # float32: its positions need it
    ranks = torch.tensor([[-1, -1, 1, -1, 0, -1, 2, -1]])
    ids = torch.tensor([[CLS, 11, 12, 13, 14, 15, 16, SEP]])
    perm_mask = official_perm_mask(ranks)
    if flip:
        perm_mask = 1.0 - perm_mask
    targets = [4, 2, 6]  # in order of rank
    mapping = torch.zeros(1, 3, 8)
    for slot, position in enumerate(targets):
        mapping[0, slot, position] = 1.0

    def logits(tokens):
        with torch.no_grad():
            return model(tokens, perm_mask=perm_mask, target_mapping=mapping).logits[0]

    base = logits(ids)
    assert base.shape == (3, VOCAB)
    leaks = []
    for slot, position in enumerate(targets):
        for other in range(8):
            other_ids = ids.clone()
            other_ids[0, other] = 40
            moved = not torch.allclose(logits(other_ids)[slot], base[slot], atol=1e-6)
            if ranks[0, other] >= ranks[0, position]:
                leaks.append(moved)
    assert any(leaks) == flip  # our polarity hides self and later targets; the flipped one not


# ---------------------------------------------------------------- end to end

def test_train_xlnet_lowers_the_loss_below_the_unigram_entropy(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    code = main(["train", "xlnet", "--data", str(data), "--steps", "300", "--batch-size", "32",
                 "--seq-len", "32", "--out", str(out), "--set", "eval_every=100",
                 "--set", "lr=5e-3", *TINY])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_loss" in row]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.3
    for key in ("eval_loss", "eval_accuracy", "baseline_entropy", "baseline_accuracy"):
        assert math.isfinite(summary[key])
    assert summary["eval_loss"] < summary["baseline_entropy"]
    assert summary["eval_accuracy"] > summary["baseline_accuracy"]
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()


def test_bad_k_is_a_clear_error(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=20)
    assert main(["train", "xlnet", "--data", str(data), "--set", "k=0",
                 "--out", str(tmp_path / "a"), *TINY]) != 0
    assert "--set k=0: k must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_config_defaults_are_the_paper_k():
    config = XLNetConfig()
    assert config.k == 6 and config.span_targets and config.max_span == 5


# ---------------------------------------------------------------- the experiment's measurements

@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    from labnotes.tokenizer import CorpusConfig
    from labnotes.training import TrainConfig
    from labnotes.xlnet import XLNetTask

    data = write_small_corpus(tmp_path_factory.mktemp("xlnet") / "small.txt")
    config = XLNetConfig(corpus=CorpusConfig(data=str(data), seq_len=32, vocab_size=400),
                         model=EncoderConfig(dim=32, ffn_dim=64, layers=2, heads=2, dropout=0.0),
                         train=TrainConfig(steps=2, batch_size=8, progress=False),
                         eval_blocks=64)
    task = XLNetTask(config)
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in task.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return task


def test_held_out_spans_are_whole_words_of_two_to_five_tokens(tiny_task):
    from labnotes.experiments.xlnet import held_out_spans

    blocks = tiny_task.valid
    spans = held_out_spans(blocks, 64)
    assert len(spans) > 40 and len({row for row, _, _ in spans}) == len(spans)
    words = blocks["word_ids"]
    for row, start, end in spans:
        assert 2 <= end - start <= 5
        assert not blocks["special_tokens_mask"][row, start:end].any()
        assert start == 0 or words[row, start - 1] != words[row, start]  # starts a word
        assert end == words.shape[1] or words[row, end] != words[row, end - 1]  # ends one
    assert spans == held_out_spans(blocks, 64), "the same spans every time"


def test_independent_scores_see_only_the_context_and_chains_differ(tiny_task):
    from labnotes.experiments.xlnet import span_batch, xlnet_span_nll

    blocks = tiny_task.valid
    spans = [(0, 3, 6)]
    ids, inside = span_batch(blocks, spans)
    tied = xlnet_span_nll(tiny_task, ids, inside, torch.where(inside, 0, -1))
    for offset, position in enumerate(range(3, 6)):  # the same as being first of the span
        first = torch.where(inside, 1, -1)
        first[0, position] = 0
        torch.testing.assert_close(xlnet_span_nll(tiny_task, ids, inside, first)[offset],
                                   tied[offset], atol=1e-5, rtol=0)
    left_to_right = torch.where(inside, torch.arange(ids.shape[1]) - 3, -1)
    chain = xlnet_span_nll(tiny_task, ids, inside, left_to_right)
    assert torch.isclose(chain[0], tied[0], atol=1e-5), "the first of the chain sees only context"
    assert not torch.allclose(chain[1:], tied[1:], atol=1e-5), "later ones see the earlier ones"


def test_bootstrap_intervals_resample_spans():
    from labnotes.experiments.xlnet import bootstrap_mean

    values = [1.0, 1.0, 3.0, 3.0, 3.0, 2.0]
    groups = [0, 0, 1, 1, 1, 2]
    cell = bootstrap_mean(values, groups)
    assert cell["mean"] == pytest.approx(13 / 6) and cell["spans"] == 3 and cell["tokens"] == 6
    assert 1.0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 3.0
    assert bootstrap_mean([2.0] * 4, [0, 1, 2, 3]) == {"mean": 2.0, "low": 2.0, "high": 2.0,
                                                      "tokens": 4, "spans": 4}
