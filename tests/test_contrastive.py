"""SimCSE: the loss, the views, the geometry, the held-out evaluation, and the command line."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from safetensors.torch import load_file

from labnotes.cli import main
from labnotes.contrastive import (ContrastiveConfig, ContrastiveTask, SentenceEncoder, alignment,
                                  anisotropy, chance_scores, delete_one_word, embed_texts,
                                  info_nce, pad_sentences, rank_of_positives, singular_spectrum,
                                  two_views, uniformity)
from labnotes.tokenizer import CorpusConfig, prepare_corpus
from labnotes.registry import load_run
from labnotes.training import TrainConfig, latest_checkpoint, read_metrics
from labnotes.transformer import EncoderConfig
from test_cli import write_small_corpus

TINY = ["--set", "dim=32", "--set", "ffn_dim=64", "--set", "layers=1",
        "--set", "corpus.vocab_size=400", "--set", "start_steps=150", "--batch-size", "32",
        "--set", "eval_queries=100"]


# ---------------------------------------------------------------- the loss

@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 12), dim=st.integers(2, 16), temperature=st.floats(0.02, 2.0),
       seed=st.integers(0, 2**16))
def test_info_nce_is_cross_entropy_over_the_cosine_matrix(count, dim, temperature, seed):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    keys = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    cosines = F.cosine_similarity(queries[:, None, :], keys[None, :, :], dim=-1)  # [N, N]
    expected = F.cross_entropy(cosines / temperature, torch.arange(count))
    assert info_nce(queries, keys, temperature).item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_info_nce_at_identical_views_is_what_the_formula_says():
    count, temperature = 8, 0.25
    orthogonal = torch.eye(count, dtype=torch.float64) * 3.0  # any length: cosines 1 and 0
    expected = math.log(1 + (count - 1) * math.exp(-1 / temperature))
    assert info_nce(orthogonal, orthogonal, temperature).item() == pytest.approx(expected, rel=1e-5)
    # random negatives: -1/tau + log sum_j exp(cos_ij / tau), averaged over i
    vectors = torch.randn(count, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    unit = [v / v.norm() for v in vectors]
    by_hand = sum(-1 / temperature + math.log(sum(math.exp(float(unit[i] @ unit[j]) / temperature)
                                                  for j in range(count)))
                  for i in range(count)) / count
    assert info_nce(vectors, vectors, temperature).item() == pytest.approx(by_hand, rel=1e-5)


# ---------------------------------------------------------------- the views

def tiny_model(dropout: float) -> SentenceEncoder:
    torch.manual_seed(0)
    return SentenceEncoder(EncoderConfig(vocab_size=50, dim=16, layers=2, heads=2, ffn_dim=32,
                                         dropout=dropout))


def a_batch():
    return pad_sentences([[7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24]])


def test_two_passes_differ_only_through_dropout():
    input_ids, padding_mask = a_batch()
    model = tiny_model(0.1).train()
    first, second = two_views(model, input_ids, padding_mask)
    assert not torch.allclose(first, second)
    torch.manual_seed(5)
    again = model(input_ids, padding_mask)
    torch.manual_seed(5)
    assert torch.equal(again, model(input_ids, padding_mask))  # same masks: the same vectors
    model.eval()
    first, second = two_views(model, input_ids, padding_mask)
    assert torch.allclose(first, second, atol=1e-6)  # no dropout: nothing else differs


def test_no_dropout_or_a_fixed_mask_gives_identical_views():
    input_ids, padding_mask = a_batch()
    first, second = two_views(tiny_model(0.0).train(), input_ids, padding_mask)
    assert torch.allclose(F.cosine_similarity(first, second), torch.ones(3), atol=1e-6)
    model = tiny_model(0.1).train()
    first, second = two_views(model, input_ids, padding_mask, views="shared")
    assert torch.equal(first, second)
    with torch.no_grad():  # and the shared view really was drawn with dropout on
        clean = model.eval()(input_ids, padding_mask)
    assert not torch.allclose(first.detach(), clean)


# ---------------------------------------------------------------- geometry

def test_alignment_and_uniformity_match_brute_force():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    unit_x, unit_y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    brute_alignment = sum(float((unit_x[i] - unit_y[i]).norm() ** 2) for i in range(9)) / 9
    assert alignment(x, y) == pytest.approx(brute_alignment)
    pairs = [(i, j) for i in range(9) for j in range(9) if i != j]
    brute = math.log(sum(math.exp(-2 * float((unit_x[i] - unit_x[j]).norm() ** 2))
                         for i, j in pairs) / len(pairs))
    assert uniformity(x) == pytest.approx(brute)
    with_self = math.log((sum(math.exp(-2 * float((unit_x[i] - unit_x[j]).norm() ** 2))
                              for i, j in pairs) + 9) / 81)
    assert uniformity(x) != pytest.approx(with_self)  # i = j is left out
    cosines = [float(unit_x[i] @ unit_x[j]) for i, j in pairs]
    assert anisotropy(x) == pytest.approx(sum(cosines) / len(cosines))
    spectrum = singular_spectrum(x)
    assert spectrum[0] == 1.0 and all(a >= b for a, b in zip(spectrum, spectrum[1:]))


def test_a_cone_has_high_anisotropy_and_one_dominant_direction():
    generator = torch.Generator().manual_seed(2)
    cone = torch.randn(50, 8, generator=generator) * 0.1 + torch.ones(8)
    assert anisotropy(cone) > 0.9 and singular_spectrum(cone)[1] < 0.2


def test_the_spectrum_skips_unused_columns_without_changing_a_value():
    """A bag of words is mostly zero columns; leaving them out of the SVD is exact (and faster)."""
    generator = torch.Generator().manual_seed(3)
    counts = torch.zeros(12, 40)
    counts[:, :7] = torch.rand(12, 7, generator=generator)
    counts[0, 30] = 1.0  # one word used once, far from the others: kept
    full = torch.linalg.svdvals(torch.nn.functional.normalize(counts.double(), dim=-1))
    assert singular_spectrum(counts) == pytest.approx((full / full[0]).tolist(), abs=1e-12)
    assert singular_spectrum(counts)[8:] == [0.0] * 4  # 12 values, as many as rows; 8 used columns


# ---------------------------------------------------------------- deleting one word

@st.composite
def sentences(draw):
    words = draw(st.lists(st.integers(1, 4), min_size=0, max_size=10))  # pieces per word
    ids, word_ids = [], []
    for word, pieces in enumerate(words):
        ids += draw(st.lists(st.integers(5, 99), min_size=pieces, max_size=pieces))
        word_ids += [word] * pieces
    deletable = [draw(st.booleans()) for _ in ids]
    return ids, word_ids, deletable


@settings(max_examples=60, deadline=None)
@given(sentence=sentences(), seed=st.integers(0, 1000))
def test_delete_one_word_removes_exactly_one_deletable_word(sentence, seed):
    ids, word_ids, deletable = sentence
    first_pieces = {}
    for position, word in enumerate(word_ids):
        first_pieces.setdefault(word, position)
    candidates = [word for word, position in first_pieces.items() if deletable[position]]
    result = delete_one_word(ids, word_ids, deletable, random.Random(seed))
    assert result == delete_one_word(ids, word_ids, deletable, random.Random(seed))
    if len(candidates) < 2:
        assert result is None
        return
    gone = [word for word in candidates
            if result == [t for t, w in zip(ids, word_ids) if w != word]]
    assert gone, "the result is the sentence less one deletable word, all its pieces"
    assert len(result) == len(ids) - word_ids.count(gone[0]) and len(result) > 0


# ---------------------------------------------------------------- ranking and the held-out sets

def test_rank_counts_ties_against_the_model_and_matches_brute_force():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    positives = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    candidates = [[i, *(j for j in range(4) if j != i)] for i in range(4)]
    ranks = rank_of_positives(queries, positives, candidates)
    unit_q, unit_p = F.normalize(queries, dim=-1), F.normalize(positives, dim=-1)
    for i in range(4):
        scores = unit_q[i] @ unit_p.T
        assert ranks[i] == 1 + sum(1 for j in range(4) if j != i and scores[j] >= scores[i])
    assert ranks.tolist() == [2, 4, 2, 4]  # query 0's positive ties with candidate 1: rank 2
    assert chance_scores(1) == {"accuracy": 1.0, "mrr": 1.0}
    assert chance_scores(100)["mrr"] == pytest.approx(0.0519, abs=1e-4)


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    data = write_small_corpus(tmp_path_factory.mktemp("contrastive") / "small.txt", documents=300)
    config = ContrastiveConfig(
        corpus=CorpusConfig(data=str(data), seq_len=32, vocab_size=400),
        model=EncoderConfig(dim=32, ffn_dim=64, layers=1, heads=2, dropout=0.1),
        train=TrainConfig(steps=2, batch_size=16, progress=False), start_steps=5,
        eval_queries=60, candidates=25)
    return ContrastiveTask(config)


def test_held_out_sets_use_held_out_documents_only_and_never_offer_the_query(tiny_task):
    prepared = prepare_corpus(tiny_task.config.corpus)
    held_out = {tuple(ids) for document in prepared.valid_documents for ids, _ in document}
    cut = tiny_task.config.corpus.seq_len - 2  # both sides cut to the length the model reads
    trained = {tuple(ids[:cut]) for document in prepared.train_documents for ids, _ in document}
    for name, retrieval in tiny_task.retrieval_sets.items():
        assert len(retrieval.queries) in (25, 50)  # whole groups only
        for query, candidates in zip(retrieval.queries, retrieval.candidates):
            assert len(candidates) == 25 == len(set(candidates))
            assert query not in [retrieval.positives[row] for row in candidates]
        assert all(row[0] == index for index, row in enumerate(retrieval.candidates))
        for query, positive in zip(retrieval.queries, retrieval.positives):
            if retrieval.name == "deletion":
                assert tuple(positive) in held_out and tuple(positive) not in trained
                assert len(query) < len(positive)
            else:  # a held-out document's first sentence, and the start of the rest of it
                assert any(list(document[0][0][: len(query)]) == query
                           and [t for ids, _ in document[1:] for t in ids][: len(positive)]
                           == positive for document in prepared.valid_documents)
    assert all(tuple(s) in held_out for s in tiny_task.held_out_sentences)
    assert not any(tuple(s) in held_out for s in tiny_task.sentences)


def test_the_training_batch_holds_distinct_training_sentences(tiny_task):
    batch = tiny_task.make_batch(0, torch.Generator().manual_seed(0))
    rows = {tuple(row[mask].tolist()) for row, mask in zip(batch["input_ids"],
                                                           batch["padding_mask"])}
    assert len(rows) == 16
    loss, metrics = tiny_task.loss(tiny_task.model.train(), batch)
    assert loss.item() > 0 and 0 <= metrics["in_batch_accuracy"] <= 1
    assert metrics["positive_cosine"] < 0.9999  # p = 0.1: two masks, two views


def test_the_fixed_mask_arm_shares_one_mask(tiny_task):
    batch = tiny_task.make_batch(0, torch.Generator().manual_seed(0))
    tiny_task.config.views = "shared"
    try:
        _, metrics = tiny_task.loss(tiny_task.model.train(), batch)
    finally:
        tiny_task.config.views = "independent"
    assert tiny_task.model.encoder.config.dropout == 0.1
    assert metrics["positive_cosine"] == pytest.approx(1.0, abs=1e-6)


def test_evaluation_reads_the_vector_before_the_mlp_and_ignores_padding(tiny_task):
    """The MLP is for training only: changing it changes no evaluation, while a change to the
    encoder does (the twin). A sentence gets the same vector alone or beside a longer one."""
    model = tiny_task.model
    device = torch.device("cpu")
    before = tiny_task.evaluate(model, device)
    saved = {name: value.clone() for name, value in model.state_dict().items()}
    try:
        with torch.no_grad():
            model.projection[0].weight.mul_(-3.0)
        assert tiny_task.evaluate(model, device) == before
        short, long = tiny_task.held_out_sentences[0], max(tiny_task.held_out_sentences, key=len)
        for pooling in ("cls", "mean"):
            model.pooling = pooling
            alone = embed_texts(model, [short], device)[0]
            beside = embed_texts(model, [short, long], device)[0]
            assert torch.allclose(alone, beside, atol=1e-5), pooling
        model.pooling = tiny_task.config.pooling
        with torch.no_grad():
            model.encoder.final_norm.weight.mul_(0.5)
            model.encoder.final_norm.bias.add_(0.3)
        assert tiny_task.evaluate(model, device) != before
    finally:
        model.load_state_dict(saved)
        model.pooling = tiny_task.config.pooling


# ---------------------------------------------------------------- end to end

def test_train_contrastive_lowers_the_loss_and_beats_the_raw_mlm(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=300)
    out = tmp_path / "run"
    code = main(["train", "contrastive", "--data", str(data), "--steps", "120", "--out", str(out),
                 "--set", "lr=1e-3", "--set", "eval_every=120", "--no-progress", *TINY])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    losses = [row["loss"] for row in read_metrics(out / "metrics.jsonl") if "loss" in row]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5
    for key in ("eval_alignment", "eval_uniformity", "eval_retrieval_accuracy",
                "baseline_retrieval_accuracy", "start_retrieval_accuracy", "start_alignment",
                "start_uniformity"):
        assert math.isfinite(summary[key])
    # the grammar's documents have no summary lines: retrieval here is the one-word deletions
    assert summary["eval_deletion_mrr"] > summary["start_deletion_mrr"] + 0.05
    assert summary["eval_deletion_accuracy"] > summary["start_deletion_accuracy"]
    assert summary["eval_uniformity"] < summary["start_uniformity"]
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()
    capsys.readouterr()
    assert main(["eval", "contrastive", "--checkpoint", str(out), "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out)  # the run folder rebuilds the same model
    assert again["eval_deletion_mrr"] == pytest.approx(summary["eval_deletion_mrr"], abs=1e-6)


def test_bad_settings_are_clear_errors_and_write_nothing(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=40)
    out = tmp_path / "a"
    assert main(["train", "contrastive", "--data", str(data), "--set", "pooling=max",
                 "--out", str(out), *TINY]) == 2
    assert "pooling 'max': choose one of cls, mean" in capsys.readouterr().err
    assert main(["train", "contrastive", "--data", str(data), "--set", f"init={tmp_path / 'no'}",
                 "--out", str(out), *TINY]) == 1
    assert "not a labnotes run folder" in capsys.readouterr().err
    assert not out.exists()


def test_init_must_be_an_mlm_run_on_the_same_corpus(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=120)
    mlm = tmp_path / "mlm"
    assert main(["train", "mlm", "--data", str(data), "--steps", "3", "--out", str(mlm),
                 "--no-progress", *TINY[:8]]) == 0
    out = tmp_path / "b"
    assert main(["train", "contrastive", "--data", str(data), "--set", f"init={mlm}",
                 "--out", str(out), *TINY, "--set", "corpus.vocab_size=300"]) == 1
    assert "its corpus.vocab_size is 400, this run's 300" in capsys.readouterr().err
    assert not out.exists()


def test_a_finished_run_reloads_without_its_start_and_trains_nothing(tmp_path, fresh_cache,
                                                                    capsys):
    data = write_small_corpus(tmp_path / "small.txt", documents=300)
    out = tmp_path / "run"
    assert main(["train", "contrastive", "--data", str(data), "--steps", "2", "--out", str(out),
                 "--no-progress", *TINY, "--set", "start_steps=2", "--set", "candidates=25",
                 "--set", "eval_queries=50", "--batch-size", "16"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(fresh_cache / "mlm-starts")
    capsys.readouterr()
    _, _, task = load_run(out)
    weights = load_file(str(latest_checkpoint(out) / "model.safetensors"))
    ours = task.model.state_dict()
    for name, value in weights.items():
        assert torch.equal(ours[name], value), name
    assert main(["eval", "contrastive", "--checkpoint", str(out), "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    recorded = [key for key in summary if key.startswith(("start_", "bow_", "baseline_", "eval_"))]
    assert any(key.startswith("start_") for key in recorded)
    for key in recorded:  # the start's measures as the run recorded them, its own as they were
        assert evaluated[key] == pytest.approx(summary[key], abs=1e-6), key
    assert not (fresh_cache / "mlm-starts").exists()  # nothing was trained again
