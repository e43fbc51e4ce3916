"""Deep InfoMax for text (InfoWord): the three estimators on scores and on Gaussians with known
MI, the views' invariants (hypothesis), n-gram lengths (chi-square), duplicates, the leak test
with its twin, and a short `labnotes train dim`."""

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from labnotes.cli import main
from labnotes.dim import (InfoWordModel, correlated_gaussians, distinct_candidates,
                          donsker_varadhan_estimate, estimator_loss, fit_critic,
                          gaussian_mutual_information, infonce_estimate, infonce_loss,
                          infoword_views, jensen_shannon_loss, ngram_length_distribution,
                          ngram_scores, retrieved, rho_for, sample_ngram_length)
from labnotes.mlm import IGNORE
from labnotes.training import read_metrics
from labnotes.transformer import EncoderConfig
from tests.test_cli import TINY, write_small_corpus

PAD, CLS, SEP, MASK, NUM_SPECIAL = 0, 2, 3, 4, 5
VOCAB = 300


# ---------------------------------------------------------------- estimators on score matrices

score_matrices = st.integers(2, 12).flatmap(lambda n: st.lists(
    st.floats(-60, 60, allow_nan=False), min_size=n * n, max_size=n * n).map(
    lambda values: torch.tensor(values, dtype=torch.float64).view(n, n)))


@settings(max_examples=60, deadline=None)
@given(score_matrices)
def test_infonce_is_cross_entropy_with_targets_on_the_diagonal_and_never_above_log_n(scores):
    n = len(scores)
    by_hand = -(scores.diagonal() - scores.logsumexp(1)).mean()
    assert torch.allclose(infonce_loss(scores), by_hand)
    assert torch.allclose(infonce_loss(scores), F.cross_entropy(scores, torch.arange(n)))
    assert infonce_estimate(scores).item() <= math.log(n) + 1e-9


@settings(max_examples=40, deadline=None)
@given(score_matrices, st.integers(0, 10 ** 6))
def test_left_out_candidates_are_as_if_absent(scores, seed):
    """A row's loss with some candidates left out equals the loss on the remaining columns."""
    n = len(scores)
    gen = torch.Generator().manual_seed(seed)
    candidates = (torch.rand(n, n, generator=gen) < 0.6) | torch.eye(n, dtype=torch.bool)
    losses = [F.cross_entropy(scores[i, candidates[i]][None],
                              torch.tensor([int(candidates[i, :i].sum())])) for i in range(n)]
    assert torch.allclose(infonce_loss(scores, candidates), torch.stack(losses).mean())
    log_counts = candidates.sum(1).double().log().mean()
    assert infonce_estimate(scores, candidates).item() <= log_counts.item() + 1e-9


def test_infonce_is_log_n_when_the_critic_cannot_tell_and_near_it_at_initialisation():
    for n in (2, 16, 128):
        assert infonce_estimate(torch.zeros(n, n)).item() == pytest.approx(0.0, abs=1e-6)
        assert infonce_loss(torch.full((n, n), 3.0)).item() == pytest.approx(math.log(n))
    torch.manual_seed(0)
    from labnotes.dim import SeparableCritic
    critic = SeparableCritic(4)
    x, y = correlated_gaussians(128, 4, 0.9, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert infonce_loss(critic(x, y)).item() == pytest.approx(math.log(128), abs=0.15)


def test_dv_and_jsd_by_hand_and_dv_with_the_true_density_ratio_recovers_the_mi():
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.0, -1.0], [0.0, 3.0, 0.0]])
    off = torch.tensor([0.0, 1.0, 0.5, -1.0, 0.0, 3.0])
    assert donsker_varadhan_estimate(scores).item() == pytest.approx(
        1.0 - math.log(off.exp().mean().item()))
    assert jensen_shannon_loss(scores).item() == pytest.approx(
        F.softplus(-torch.tensor([2.0, 1.0, 0.0])).mean().item() + F.softplus(off).mean().item())
    # the best critic is log p(x, y) / (p(x) p(y)); with it, DV reads the true MI
    rho, n = 0.6, 3000
    x, y = correlated_gaussians(n, 1, rho, torch.Generator().manual_seed(0))
    x, y = x[:, 0].double(), y[:, 0].double()
    ratio = (-0.5 * math.log(1 - rho ** 2)
             - (rho ** 2 * x[:, None] ** 2 - 2 * rho * x[:, None] * y[None]
                + rho ** 2 * y[None] ** 2) / (2 * (1 - rho ** 2)))
    truth = gaussian_mutual_information(1, rho)
    assert donsker_varadhan_estimate(ratio).item() == pytest.approx(truth, abs=0.05)
    with pytest.raises(ValueError, match="choose one of infonce, jsd, dv"):
        estimator_loss("nwj", ratio)


@pytest.mark.parametrize("estimator, below", [("infonce", 0.25), ("dv", 0.5)])
def test_a_trained_critic_gets_close_below_the_true_mi(estimator, below):
    """1.02 nats at d = 2, rho = 0.8, batches of 64 (log N = 4.16, far above the truth)."""
    rho = 0.8
    result = fit_critic(estimator, dim=2, rho=rho, batch_size=64, steps=300, eval_batches=20)
    truth = gaussian_mutual_information(2, rho)
    assert result["true"] == pytest.approx(truth)
    assert truth - below < result["estimate"] < truth + 0.15, result


def test_infonce_flattens_at_log_n_when_the_mi_is_larger():
    result = fit_critic("infonce", dim=4, rho=rho_for(8.0, 4), batch_size=16, steps=300)
    assert math.log(16) - 0.6 < result["estimate"] <= math.log(16)


# ---------------------------------------------------------------- views


def make_rows(seed: int, batch: int, seq_len: int, *, min_real: int = 1,
              inner_sep: bool = False, vocab: int = VOCAB):
    """Rows like labnotes' blocks: [CLS] tokens [SEP] [PAD]..., optionally a [SEP] inside."""
    rng = random.Random(seed)
    ids = torch.full((batch, seq_len), PAD)
    for row in range(batch):
        real = rng.randint(min_real, seq_len - 2)
        tokens = [rng.randrange(NUM_SPECIAL, vocab) for _ in range(real)]
        if inner_sep and real >= 3:
            tokens[rng.randrange(1, real - 1)] = SEP
        ids[row, :real + 2] = torch.tensor([CLS, *tokens, SEP])
    special = ids < NUM_SPECIAL
    return ids, special


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(1, 9), st.integers(3, 40), st.booleans())
def test_views_hide_the_ngram_and_never_take_a_special_token(seed, batch, seq_len, inner_sep):
    ids, special = make_rows(seed, batch, seq_len, inner_sep=inner_sep)
    views = infoword_views(ids, special, vocab_size=VOCAB,
                           generator=torch.Generator().manual_seed(seed))
    length = views.local_inputs.shape[1] - 2
    assert 1 <= length <= 10
    assert (views.ngram_mask.sum(1) == length).all(), "one length per batch"
    assert not (views.ngram_mask & special).any(), "no special token inside an n-gram"
    for row in range(batch):  # contiguous
        where = views.ngram_mask[row].nonzero().flatten()
        assert (where == torch.arange(where[0], where[0] + length)).all()
    # the global view holds [MASK] at every n-gram position; the local view its tokens
    assert (views.global_inputs[views.ngram_mask] == MASK).all()
    assert torch.equal(views.local_inputs[:, 1:-1], ids[views.ngram_mask].view(batch, length))
    assert (views.local_inputs[:, 0] == CLS).all() and (views.local_inputs[:, -1] == SEP).all()
    # MLM targets: every n-gram token, the original tokens elsewhere, never a special
    assert torch.equal(views.labels[views.ngram_mask], ids[views.ngram_mask])
    targets = views.labels != IGNORE
    assert torch.equal(views.labels[targets], ids[targets]) and not (targets & special).any()
    changed = views.global_inputs != ids
    assert not (changed & ~targets).any(), "only targets are changed"
    assert torch.equal(views.padding_mask, ids != PAD)
    again = infoword_views(ids, special, vocab_size=VOCAB,
                           generator=torch.Generator().manual_seed(seed))
    assert all(torch.equal(a, b) for a, b in zip(views, again))


def test_ngram_lengths_follow_the_clipped_rounded_normal():
    gen = torch.Generator().manual_seed(0)
    observed = torch.bincount(torch.tensor([sample_ngram_length(gen) for _ in range(4000)]),
                              minlength=11)[1:].double()
    expected = torch.tensor(ngram_length_distribution()) * observed.sum()
    keep = expected > 5  # chi-square needs expected counts of 5 or more
    statistic = (((observed - expected) ** 2 / expected)[keep]).sum().item()
    assert statistic < chi2.ppf(1 - 1e-6, df=int(keep.sum()) - 1), observed.tolist()
    assert observed[5:].sum() > 0 and observed.sum() == 4000
    # the same check rejects a mean of 4
    shifted = torch.bincount(torch.tensor([sample_ngram_length(gen, mean=4.0)
                                           for _ in range(4000)]), minlength=11)[1:].double()
    assert (((shifted - expected) ** 2 / expected)[keep]).sum().item() > chi2.ppf(1 - 1e-6, 5)
    # and the views use it: rows long enough take the drawn length as it is
    ids, special = make_rows(1, 4, 30, min_real=20)
    lengths = [infoword_views(ids, special, vocab_size=VOCAB,
                              generator=torch.Generator().manual_seed(s)).local_inputs.shape[1] - 2
               for s in range(30)]
    drawn = [sample_ngram_length(torch.Generator().manual_seed(s)) for s in range(30)]
    assert lengths == drawn


def test_duplicate_ngrams_are_not_negatives_and_length_cannot_help():
    ngrams = torch.tensor([[7, 8], [9, 10], [7, 8], [11, 12]])
    candidates = distinct_candidates(ngrams)
    assert candidates.tolist() == [[True, True, False, True], [True, True, True, True],
                                   [False, True, True, True], [True, True, True, True]]
    scores = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    scores[0, 2] = 100.0  # the twin's score does not count against row 0
    assert retrieved(scores, candidates)[0] == float(scores[0, 0] > scores[0, [1, 3]].max())
    # every n-gram of a batch has one length, so any critic of lengths alone scores a row's
    # candidates equally: InfoNCE stays at log n and nothing is retrieved
    ids, special = make_rows(3, 8, 24, min_real=3)
    views = infoword_views(ids, special, vocab_size=VOCAB, generator=torch.Generator())
    global_lengths = views.ngram_mask.sum(1).float()
    local_lengths = (views.local_inputs.shape[1] - 2) * torch.ones(8)
    length_critic = -(global_lengths[:, None] - local_lengths[None]).abs()
    log_counts = views.candidates.sum(1).float().log().mean()
    assert infonce_loss(length_critic, views.candidates).item() == pytest.approx(log_counts.item())
    assert retrieved(length_critic, views.candidates).sum() == 0


# ---------------------------------------------------------------- model


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = InfoWordModel(EncoderConfig(vocab_size=VOCAB, dim=32, heads=2, ffn_dim=64,
                                        layers=2, dropout=0.0))
    return model.eval()


def test_leak_the_global_view_never_sees_its_ngram_and_the_local_view_does(tiny_model):
    ids, special = make_rows(5, 6, 24, min_real=12)
    views = infoword_views(ids, special, vocab_size=VOCAB,
                           generator=torch.Generator().manual_seed(5))
    twin_ids = ids.clone()  # the same rows with other n-gram tokens
    twin_ids[views.ngram_mask] = torch.randint(NUM_SPECIAL, VOCAB, (int(views.ngram_mask.sum()),),
                                               generator=torch.Generator().manual_seed(1))
    assert not torch.equal(twin_ids, ids)
    twin = infoword_views(twin_ids, special, vocab_size=VOCAB,
                          generator=torch.Generator().manual_seed(5))
    assert torch.equal(twin.ngram_mask, views.ngram_mask)
    with torch.no_grad():
        out = tiny_model(*views[:3], views.local_inputs)
        out_twin = tiny_model(*twin[:3], twin.local_inputs)
    assert torch.equal(out.global_vectors, out_twin.global_vectors)
    outside = ~views.ngram_mask[views.labels != IGNORE]  # MLM targets outside the n-gram
    assert torch.equal(out.mlm_logits[outside], out_twin.mlm_logits[outside])
    assert not torch.allclose(out.local_vectors, out_twin.local_vectors)
    # the twin that must move: a changed token outside the n-gram changes the global view
    moved_ids = ids.clone()
    row, position = 0, int((~views.ngram_mask[0] & ~special[0]).nonzero()[0])
    moved_ids[row, position] = NUM_SPECIAL if ids[row, position] != NUM_SPECIAL else NUM_SPECIAL + 1
    moved = infoword_views(moved_ids, special, vocab_size=VOCAB,
                           generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out_moved = tiny_model(*moved[:3], moved.local_inputs)
    if moved.global_inputs[row, position] != views.global_inputs[row, position]:
        assert not torch.allclose(out_moved.global_vectors[row], out.global_vectors[row])
    assert torch.equal(out_moved.local_vectors, out.local_vectors)


def test_padding_never_changes_the_views(tiny_model):
    ids, special = make_rows(2, 3, 20, min_real=8)
    views = infoword_views(ids, special, vocab_size=VOCAB, generator=torch.Generator())
    pad = torch.zeros(3, 6, dtype=torch.long)
    with torch.no_grad():
        out = tiny_model(*views[:3], views.local_inputs)
        longer = tiny_model(torch.cat([views.global_inputs, pad], 1),
                            torch.cat([views.labels, pad + IGNORE], 1),
                            torch.cat([views.padding_mask, pad.bool()], 1), views.local_inputs)
    assert torch.allclose(out.global_vectors, longer.global_vectors, atol=1e-5)
    assert torch.allclose(out.mlm_logits, longer.mlm_logits, atol=1e-4)
    assert ngram_scores(out.global_vectors, out.local_vectors).shape == (3, 3)


# ---------------------------------------------------------------- end to end


def test_train_dim_lowers_both_losses_and_retrieves_above_chance(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    code = main(["train", "dim", "--data", str(data), "--steps", "300", "--batch-size", "32",
                 "--seq-len", "32", "--out", str(out), "--set", "eval_every=100",
                 "--set", "lr=5e-3", *TINY])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    evals = [row for row in read_metrics(out / "metrics.jsonl") if "eval_mlm_loss" in row]
    first_train = next(row for row in read_metrics(out / "metrics.jsonl") if "dim_loss" in row)
    assert first_train["dim_loss"] == pytest.approx(math.log(32), abs=0.1)
    assert summary["eval_mlm_loss"] < summary["baseline_entropy"] - 0.3
    assert summary["eval_dim_loss"] < math.log(32) - 0.5
    assert evals[-1]["eval_dim_loss"] < evals[0]["eval_dim_loss"] + 0.2
    assert summary["eval_retrieval_accuracy"] > 3 * summary["baseline_retrieval_accuracy"]
    assert summary["baseline_retrieval_accuracy"] == pytest.approx(1 / 32, rel=0.2)
    assert 0 < summary["eval_mi_estimate"] <= summary["eval_log_candidates"]
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()


def test_jsd_switch_and_bad_settings(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=20)
    out = tmp_path / "jsd"
    assert main(["train", "dim", "--data", str(data), "--steps", "3", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(out), "--set", "estimator=jsd", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_dim_loss"] != summary["eval_infonce_loss"]
    assert main(["train", "dim", "--data", str(data), "--set", "estimator=nce",
                 "--out", str(tmp_path / "bad"), *TINY]) == 2
    assert "estimator='nce': choose infonce or jsd" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- the experiment's scorers


def test_mlm_slot_scores_match_a_plain_loop(tiny_model):
    from labnotes.experiments.dim import pseudo_likelihood_scores, slot_all_masked_scores

    ids, special = make_rows(7, 4, 16, min_real=8)
    views = infoword_views(ids, special, vocab_size=VOCAB,
                           generator=torch.Generator().manual_seed(7))
    candidates = views.local_inputs[:, 1:-1]
    with torch.no_grad():
        all_masked = slot_all_masked_scores(tiny_model, views)
        pseudo = pseudo_likelihood_scores(tiny_model, views)
        for i in range(4):
            hole = views.ngram_mask[i].nonzero().flatten()
            real = views.padding_mask[i:i + 1]
            dense = tiny_model.head(tiny_model.encoder(views.global_inputs[i:i + 1],
                                                       padding_mask=real))[0]
            log_probs = dense.log_softmax(-1)  # [T, V]
            for j in range(4):
                expected = sum(log_probs[p, candidates[j, k]] for k, p in enumerate(hole))
                assert all_masked[i, j].item() == pytest.approx(expected.item(), abs=1e-4)
                total = 0.0
                for k, p in enumerate(hole):
                    filled = views.global_inputs[i].clone()
                    filled[hole] = candidates[j]
                    filled[p] = MASK
                    row = tiny_model.head(tiny_model.encoder(filled[None], padding_mask=real))[0, p]
                    total += row.log_softmax(-1)[candidates[j, k]].item()
                assert pseudo[i, j].item() == pytest.approx(total, abs=1e-4)


def test_pair_probe_features_are_each_sentence_first_token_state_alone(tiny_model):
    """A pair task's probe features: the two sentences' first-token states, each encoded alone,
    joined as [u; v; |u - v|; u * v]; changing a token of B moves v, never u (twin)."""
    from labnotes.downstream import Examples
    from labnotes.experiments.dim import first_token_features, task_features

    torch.manual_seed(0)
    first, second = (torch.randint(NUM_SPECIAL, VOCAB, (3, 7)),
                     torch.randint(NUM_SPECIAL, VOCAB, (3, 5)))
    first[:, 0] = second[:, 0] = CLS  # the first token's state is the one read
    first[0, 5:] = PAD  # padding, as a padded batch has
    examples = Examples(first, torch.zeros_like(first), torch.zeros(3, dtype=torch.long),
                        torch.arange(3), second)
    encoder = tiny_model.encoder
    joined = task_features(encoder, examples)
    dim = encoder.config.dim
    for row in range(3):
        length = int((first[row] != PAD).sum())
        u = first_token_features(encoder, first[row:row + 1, :length])[0]
        v = first_token_features(encoder, second[row:row + 1])[0]
        expected = torch.cat([u, v, (u - v).abs(), u * v])
        assert torch.allclose(joined[row], expected, atol=1e-5)
    moved = second.clone()
    moved[1, 3] = (moved[1, 3] + 1 - NUM_SPECIAL) % (VOCAB - NUM_SPECIAL) + NUM_SPECIAL
    twin = task_features(encoder, Examples(first, torch.zeros_like(first), examples.labels,
                                           examples.documents, moved))
    assert torch.equal(twin[:, :dim], joined[:, :dim]), "u reads A alone"
    assert not torch.allclose(twin[1, dim:2 * dim], joined[1, dim:2 * dim]), "v reads B"
    single = task_features(encoder, dataclasses.replace(examples, second_ids=None))
    assert torch.equal(single, joined[:, :dim]), "a single-input task: the first-token state"


def test_span_differences_are_paired_token_by_token():
    """A constant shift of every hidden token's NLL comes back as that shift, overall and for
    each span length, with an interval of zero width; a shift on one length moves that length
    only (twin)."""
    from labnotes.experiments.dim import span_differences

    generator = torch.Generator().manual_seed(0)
    labels = torch.full((6, 10), IGNORE)
    labels[:, 2:5] = 7
    spans = {"labels": labels, "block": torch.tensor([0, 0, 1, 1, 2, 2]),
             "span_words": torch.tensor([1, 2, 1, 2, 1, 2])}
    reference = torch.rand(6, 10, generator=generator, dtype=torch.float64)
    shifted = span_differences(reference + 0.25, reference, spans)
    for cell in (shifted["all"], *shifted["by_length"].values()):
        assert cell["mean"] == pytest.approx(0.25) and cell["high"] - cell["low"] < 1e-9
    one_length = reference.clone()
    one_length[spans["span_words"] == 2] += 1.0
    moved = span_differences(one_length, reference, spans)
    assert moved["by_length"]["1"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert moved["by_length"]["2"]["mean"] == pytest.approx(1.0)
    assert moved["all"]["mean"] == pytest.approx(0.5)


def test_stored_span_differences_are_dim_minus_mlm():
    """The stored whole-span differences are MLM + DIM minus MLM of the same seed (the sign
    the table's caption states), equal to the difference of the two arms' own means."""
    results = json.loads((Path(__file__).parents[1] / "docs/results/dim/results.json").read_text())
    for seed, found in results["span_differences"].items():
        dim, mlm = (results["runs"][arm][seed]["spans"]["all"]["mean"]
                    for arm in ("MLM + DIM", "MLM"))
        assert found["all"]["mean"] == pytest.approx(dim - mlm, abs=1e-9)
