"""ELECTRA: masking rule, sampling, replacement labels, no gradient through sampling, shared
embeddings, the leak test, Hugging Face's heads as an oracle, `labnotes train electra`; the
experiment's hybrids of BERT and ELECTRA (Table 5); held-out AUC and the constant answer's loss;
the warm start from an MLM encoder."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, load_model
from hypothesis import given, settings
from hypothesis import strategies as st

from labnotes.cli import main
from labnotes.mlm import trained_start
from labnotes.registry import load_run
from labnotes.tokenizer import CLS_ID, SEP_ID, CorpusConfig
from labnotes.electra import (ELECTRA, ElectraConfig, ElectraTask, binary_entropy,
                              discriminator_loss, electra_masking, generator_config,
                              replace_tokens, replaced_auc, sample_tokens)
from labnotes.experiments.electra import (HYBRIDS, AllTokensMLM, Electra15, HybridTask,
                                          ReplaceMLM, all_tokens_mlm_loss, bootstrap_auc)
from labnotes.mlm import IGNORE, MaskedLanguageModel
from labnotes.training import CheckpointError, TrainConfig, latest_checkpoint, read_metrics, train
from labnotes.transformer import EncoderConfig
from tests.test_cli import TINY, write_small_corpus

VOCAB, MASK, NUM_SPECIAL, PAD = 300, 4, 5, 0
SMALL = EncoderConfig(vocab_size=VOCAB, max_len=32, dim=32, layers=1, heads=2, ffn_dim=64,
                      dropout=0.0)


def binomial_bound(n: int, p: float, z: float = 5.0) -> float:
    return z * math.sqrt(p * (1 - p) / n)


def make_batch(seed: int, batch: int = 4, length: int = 24, pad_from: int = 18):
    """Masked ids, labels, padding mask and sampling noise for a random batch with padding at
    the end."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIAL, VOCAB, (batch, length), generator=g)
    ids[:, 0], ids[:, pad_from - 1], ids[:, pad_from:] = 2, 3, PAD
    special = (ids == 2) | (ids == 3) | (ids == PAD)
    masked, labels = electra_masking(ids, special, vocab_size=VOCAB, rate=0.3, generator=g)
    return masked, labels, ids != PAD, torch.rand(ids.shape, generator=g), ids


# --------------------------------------------------------------------------- corruption and labels

@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 5), length=st.integers(1, 30),
       rate=st.floats(0.0, 1.0), equal_rate=st.floats(0.0, 1.0))
def test_replaced_exactly_where_the_sample_differs(seed, batch, length, rate, equal_rate):
    g = torch.Generator().manual_seed(seed)
    # a small vocabulary: many collisions
    original = torch.randint(NUM_SPECIAL, 20, (batch, length), generator=g)
    selected = torch.rand(batch, length, generator=g) < rate
    sampled = torch.randint(NUM_SPECIAL, 20, (int(selected.sum()),), generator=g)
    keep = torch.rand(sampled.shape, generator=g) < equal_rate
    sampled[keep] = original[selected][keep]  # some samples equal the original
    corrupted, replaced = replace_tokens(original, selected, sampled)
    assert replaced.dtype == torch.bool and corrupted.shape == original.shape
    assert torch.equal(corrupted[selected], sampled), \
        "selected positions hold the samples, in order"
    assert torch.equal(corrupted[~selected], original[~selected]), "other positions are untouched"
    assert not replaced[~selected].any(), "a non-selected position is never replaced"
    assert torch.equal(replaced[selected], sampled != original[selected]), \
        "replaced iff the sample differs"


def test_electra_masking_is_85_mask_15_keep_and_never_random():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(NUM_SPECIAL, VOCAB, (400, 128), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    masked, labels = electra_masking(ids, special, vocab_size=VOCAB, generator=g)
    selected = labels != IGNORE
    n, candidates = int(selected.sum()), int((~special).sum())
    assert abs(n / candidates - 0.15) < binomial_bound(candidates, 0.15)
    assert not selected[special].any()
    is_mask = masked[selected] == MASK
    assert abs(is_mask.float().mean().item() - 0.85) < binomial_bound(n, 0.85)
    assert torch.equal(masked[selected][~is_mask], ids[selected][~is_mask]), \
        "no random replacements"
    assert torch.equal(masked[~selected], ids[~selected])


# --------------------------------------------------------------------------- sampling

def test_sampling_follows_the_softmax_and_never_writes_a_special_token():
    logits = torch.randn(1, 12) * 2
    noise = torch.rand(60000, generator=torch.Generator().manual_seed(1))
    samples = sample_tokens(logits.expand(len(noise), -1), noise)
    counts = torch.bincount(samples, minlength=12).double()
    assert counts[:NUM_SPECIAL].sum() == 0
    expected = logits[0, NUM_SPECIAL:].softmax(-1).double() * len(noise)
    chi2 = ((counts[NUM_SPECIAL:] - expected) ** 2 / expected).sum().item()
    assert chi2 < 40  # 6 dof: P(chi2 > 40) ~ 5e-7


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 8), vocab=st.integers(6, 50))
def test_sampling_is_deterministic_and_in_range(seed, rows, vocab):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=g) * 5
    noise = torch.rand(rows, generator=g)
    noise[0] = 0.0  # the extremes of [0, 1)
    noise[-1] = 1.0 - 2**-24
    first, again = sample_tokens(logits, noise), sample_tokens(logits, noise)
    assert torch.equal(first, again)
    assert ((first >= NUM_SPECIAL) & (first < vocab)).all()


def test_sampling_carries_no_gradient():
    logits = torch.randn(5, 20, requires_grad=True)
    sampled = sample_tokens(logits, torch.rand(5))
    assert not sampled.requires_grad and sampled.dtype == torch.long


# --------------------------------------------------------------------------- losses

def test_pads_carry_no_loss():
    torch.manual_seed(0)
    logits, replaced = torch.randn(3, 10), torch.rand(3, 10) < 0.3
    real = torch.ones(3, 10, dtype=torch.bool)
    real[:, 7:] = False
    other_logits, other_replaced = logits.clone(), replaced.clone()
    other_logits[~real], other_replaced[~real] = 100.0, True
    assert discriminator_loss(logits, replaced, real) == \
        discriminator_loss(other_logits, other_replaced, real)
    # and through the whole model: whatever sits in padded positions changes neither loss
    model = ELECTRA(SMALL).eval()
    masked, labels, padding, noise, _ = make_batch(0)
    with torch.no_grad():
        base = model(masked, labels, padding, noise)
        garbage = masked.clone()
        garbage[~padding] = torch.randint(NUM_SPECIAL, VOCAB, (int((~padding).sum()),))
        moved = model(garbage, labels, padding, noise)
    assert torch.allclose(base["loss"], moved["loss"], atol=1e-6)
    assert torch.allclose(base["disc_logits"][padding], moved["disc_logits"][padding], atol=1e-5)


def test_all_tokens_mlm_loss_is_the_copy_mixture():
    torch.manual_seed(0)
    config = EncoderConfig(vocab_size=12, dim=8, heads=2, ffn_dim=16, layers=1)
    model = AllTokensMLM(config)
    hidden = torch.randn(2, 5, 8)
    corrupted = torch.randint(NUM_SPECIAL, 12, (2, 5))
    original = corrupted.clone()
    original[0, 1] = (corrupted[0, 1] - NUM_SPECIAL + 1) % 7 + NUM_SPECIAL  # one replaced token
    real = torch.ones(2, 5, dtype=torch.bool)
    real[1, 4] = False
    loss = all_tokens_mlm_loss(model.head, model.copy_gate, hidden, corrupted, original, real)
    manual = []
    for b, t in real.nonzero().tolist():
        d = torch.sigmoid(model.copy_gate(hidden[b, t])).squeeze()
        p_model = model.head(hidden[b, t][None]).softmax(-1)[0, original[b, t]]
        p = d * float(corrupted[b, t] == original[b, t]) + (1 - d) * p_model
        manual.append(-torch.log(p))
    assert torch.allclose(loss, torch.stack(manual).mean(), atol=1e-5)


@pytest.mark.parametrize("kind", [ELECTRA, *HYBRIDS.values()], ids=lambda kind: kind.__name__)
def test_every_objective_gives_a_finite_loss_and_gradients(kind):
    torch.manual_seed(0)
    model = kind(SMALL)
    masked, labels, padding, noise, _ = make_batch(1)
    out = model(masked, labels, padding, noise)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.encoder.blocks[0].attention.qkv.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- structure

def generator_only_parameters(model: ELECTRA) -> list[tuple[str, torch.Tensor]]:
    shared = {id(p) for p in model.encoder.parameters()}
    return [(n, p) for n, p in model.generator.named_parameters() if id(p) not in shared]


def test_no_gradient_reaches_the_generator_through_the_sampling():
    torch.manual_seed(0)
    masked, labels, padding, noise, _ = make_batch(2)
    for mlm_weight in (0.0, 1.0):
        model = ELECTRA(SMALL, mlm_weight=mlm_weight)
        out = model(masked, labels, padding, noise)
        out["loss"].backward()
        grads = {n: p.grad for n, p in generator_only_parameters(model)}
        assert grads and "head.transform.weight" in grads
        assert "encoder.blocks.0.attention.qkv.weight" in grads
        touched = [n for n, g in grads.items() if g is not None and g.abs().sum() > 0]
        if mlm_weight == 0.0:
            assert touched == [], f"the discriminator's loss reached the generator: {touched}"
            assert model.encoder.embeddings.token.weight.grad.abs().sum() > 0, \
                "shared embeddings still learn"
        else:  # the check above is not vacuous: the MLM loss does reach every generator weight
            assert len(touched) == len(grads), set(grads) - set(touched)


def test_embeddings_are_shared_storage_not_copies():
    model = ELECTRA(SMALL)
    embeddings = model.encoder.embeddings
    token, position = embeddings.token.weight, embeddings.position.weight
    assert model.generator.encoder.embeddings.shared is model.encoder.embeddings
    assert model.generator.head.embedding.weight is token
    generator_tensors = dict(model.generator.named_parameters(remove_duplicate=False))
    shared = "encoder.embeddings.shared"
    assert generator_tensors[f"{shared}.token.weight"].data_ptr() == token.data_ptr()
    assert generator_tensors[f"{shared}.position.weight"].data_ptr() == position.data_ptr()
    with torch.no_grad():
        token[7].fill_(3.0)
    assert (model.generator.head.embedding.weight[7] == 3.0).all()
    # counted once: the model is the discriminator + the generator's own layers, no second table
    total = sum(p.numel() for p in model.parameters())
    own = sum(p.numel() for _, p in generator_only_parameters(model))
    assert total == sum(p.numel() for p in model.encoder.parameters()) + own + \
        sum(p.numel() for p in model.head.parameters())


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_generator_is_the_stated_fraction_of_the_discriminator(fraction):
    config = EncoderConfig(vocab_size=VOCAB, dim=128, heads=2, ffn_dim=512, layers=2)
    model = ELECTRA(config, generator_fraction=fraction)
    narrow = model.generator.encoder.config
    assert narrow.dim == round(128 * fraction) and narrow.ffn_dim == round(512 * fraction)
    assert narrow.layers == config.layers and narrow.dim % narrow.heads == 0
    assert model.generator.encoder.final_norm.normalized_shape == (narrow.dim,)
    projection = model.generator.encoder.embeddings.project
    if fraction == 1.0:
        assert isinstance(projection, torch.nn.Identity)
    else:
        assert projection.weight.shape == (narrow.dim, 128)
    blocks = lambda encoder: sum(p.numel() for p in encoder.blocks.parameters())
    ratio = blocks(model.generator.encoder) / blocks(model.encoder)
    # a block's weights scale with width squared
    assert ratio == pytest.approx(fraction**2, rel=0.05)
    assert generator_config(config, 0.25).heads == 1


# --------------------------------------------------------------------------- leak test

def test_discriminator_reads_only_the_corrupted_sequence():
    """Change the original token at a replaced, [MASK]ed position: the discriminator cannot see
    it."""
    torch.manual_seed(0)
    model = ELECTRA(SMALL).eval()
    masked, labels, padding, noise, _ = make_batch(3)
    with torch.no_grad():
        before = model(masked, labels, padding, noise)
    candidates = (before["replaced"] & (masked == MASK)).nonzero().tolist()
    assert candidates, "the batch must have a replaced [MASK] position"
    b, t = candidates[0]
    changed = labels.clone()
    changed[b, t] = (labels[b, t] - NUM_SPECIAL + 1) % (VOCAB - NUM_SPECIAL) + NUM_SPECIAL
    with torch.no_grad():
        after = model(masked, changed, padding, noise)
    assert torch.equal(before["corrupted"], after["corrupted"])
    assert torch.allclose(before["disc_logits"][b, t], after["disc_logits"][b, t], atol=0, rtol=0)
    assert torch.allclose(before["disc_logits"], after["disc_logits"], atol=0, rtol=0)
    assert not torch.equal(before["mlm_loss"], after["mlm_loss"]), "the hidden answer did change"


# --------------------------------------------------------------------------- Hugging Face oracle

def test_heads_and_loss_match_huggingface_electra():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = ELECTRA(SMALL).eval()
    masked, labels, padding, noise, _ = make_batch(4)
    with torch.no_grad():
        out = model(masked, labels, padding, noise)
        hidden = model.encoder(out["corrupted"], padding_mask=padding)
    hf_config = transformers.ElectraConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=32,
                                           num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=64, hidden_act="gelu",
                                           layer_norm_eps=1e-5)
    discriminator = transformers.ElectraForPreTraining(hf_config).eval()
    head = discriminator.discriminator_predictions
    head.dense.load_state_dict(model.head.dense.state_dict())
    head.dense_prediction.load_state_dict(model.head.out.state_dict())

    # HF's encoder replaced by ours: compare the head and the loss only
    class Stub(torch.nn.Module):
        def forward(self, *args, **kwargs):
            return transformers.modeling_outputs.BaseModelOutput(last_hidden_state=hidden)

    discriminator.electra = Stub()
    with torch.no_grad():
        theirs = discriminator(out["corrupted"], attention_mask=padding.long(),
                               labels=out["replaced"].long())
    assert torch.allclose(theirs.logits, out["disc_logits"], atol=1e-5)
    assert torch.allclose(theirs.loss, out["main_loss"], atol=1e-6)

    # the generator's head: dense to the embedding width, GELU, LayerNorm, tied output + bias
    gen_config = transformers.ElectraConfig(vocab_size=VOCAB, embedding_size=32, hidden_size=8,
                                            layer_norm_eps=1e-5, num_attention_heads=1)
    generator = transformers.ElectraForMaskedLM(gen_config).eval()
    ours = model.generator.head
    generator.generator_predictions.dense.load_state_dict(ours.transform.state_dict())
    generator.generator_predictions.LayerNorm.load_state_dict(ours.norm.state_dict())
    generator.generator_lm_head.weight = torch.nn.Parameter(ours.embedding.weight.detach().clone())
    generator.generator_lm_head.bias = torch.nn.Parameter(torch.randn(VOCAB))
    ours.bias.data.copy_(generator.generator_lm_head.bias.data)
    h = torch.randn(6, 8)
    with torch.no_grad():
        reference = generator.generator_lm_head(generator.generator_predictions(h))
        assert torch.allclose(ours(h), reference, atol=1e-5)


# --------------------------------------------------------------------------- command line

def test_train_electra_lowers_both_losses_and_reports_detection(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    code = main(["train", "electra", "--data", str(data), "--steps", "300", "--batch-size", "32",
                 "--seq-len", "32", "--out", str(out), "--set", "eval_every=50", "--set", "lr=3e-3",
                 "--set", "warmup_steps=10", "--set", "warm_start_steps=0", *TINY])
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    steps, evals = [r for r in rows if "mlm_loss" in r], [r for r in rows if "eval_loss" in r]
    late = lambda key: sum(r[key] for r in steps[-3:]) / 3
    assert late("mlm_loss") < steps[0]["mlm_loss"] - 1.0, "the generator's MLM loss falls"
    assert late("main_loss") < steps[0]["main_loss"] - 0.1, "the discriminator's loss falls"
    assert evals[-1]["eval_mlm_loss"] < evals[0]["eval_mlm_loss"]
    assert evals[-1]["eval_main_loss"] < evals[0]["eval_main_loss"]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("eval_disc_accuracy", "eval_disc_precision", "eval_disc_recall",
                "baseline_disc_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["eval_disc_accuracy"] > summary["baseline_disc_accuracy"], \
        "better than 'all original'"
    # a detector that guessed would be right as often as tokens are replaced; ours is right far
    # more often
    assert summary["eval_disc_precision"] > 3 * summary["eval_replaced_fraction"]
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "config.json"):
        assert (out / name).exists()


def test_bad_settings_are_clear_errors(tmp_path, capsys):
    # the hybrids live on the experiment page: `labnotes train electra` trains ELECTRA only
    assert main(["train", "electra", "--set", "objective=gan", "--out", str(tmp_path / "a")]) == 2
    assert "--set objective: unknown setting" in capsys.readouterr().err
    assert main(["train", "electra", "--set", "generator_fraction=0",
                 "--out", str(tmp_path / "b")]) == 2
    assert "generator_fraction must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- the experiment's hybrids

def test_the_discriminator_never_reads_a_mask_token():
    model = ELECTRA(SMALL)
    masked, labels, padding, noise, ids = make_batch(5)
    assert (masked == MASK).any()
    out = model.corrupt(masked, labels, padding, noise)
    assert not (out["corrupted"] == MASK).any()
    assert torch.equal(out["original"], ids), "un-masking gives back the true sequence"


def test_electra_15_grades_only_the_selected_positions():
    torch.manual_seed(0)
    model = Electra15(SMALL)
    masked, labels, padding, noise, _ = make_batch(6)
    out = model(masked, labels, padding, noise)
    selected = labels != IGNORE
    expected = discriminator_loss(out["disc_logits"], out["replaced"], selected)
    assert torch.equal(out["main_loss"], expected) and int(out["main_count"]) == int(selected.sum())
    assert torch.allclose(out["loss"], out["mlm_loss"] + 50.0 * expected)


def test_replace_mlm_predicts_the_original_at_the_selected_positions():
    torch.manual_seed(0)
    model = ReplaceMLM(SMALL)
    masked, labels, padding, noise, _ = make_batch(7)
    out = model(masked, labels, padding, noise)
    selected = labels != IGNORE
    hidden = model.encoder(out["corrupted"], padding_mask=padding)
    expected = torch.nn.functional.cross_entropy(model.head(hidden[selected]), labels[selected])
    assert torch.allclose(out["main_loss"], expected, atol=1e-6)
    assert torch.allclose(out["loss"], out["mlm_loss"] + expected, atol=1e-6), "weight 1, not 50"
    assert "disc_logits" not in out


@pytest.mark.parametrize("kind", HYBRIDS.values(), ids=lambda kind: kind.__name__)
def test_hybrids_start_from_electras_encoder_and_generator(kind):
    torch.manual_seed(3)
    electra = ELECTRA(SMALL).state_dict()
    torch.manual_seed(3)
    hybrid = kind(SMALL).state_dict()
    shared = [key for key in electra if not key.startswith("head.")]
    assert all(torch.equal(electra[key], hybrid[key]) for key in shared)


@pytest.mark.parametrize("objective", sorted(HYBRIDS))
def test_each_hybrid_trains_through_the_pages_task(objective, tmp_path):
    data = write_small_corpus(tmp_path / "small.txt", documents=40)
    config = ElectraConfig(corpus=CorpusConfig(data=str(data), seq_len=32, vocab_size=400),
                           model=SMALL, eval_blocks=16, warm_start_steps=0,
                           train=TrainConfig(steps=3, batch_size=8, eval_every=3,
                                             checkpoint_every=3, progress=False))
    task = HybridTask(config, objective)
    assert type(task.model) is HYBRIDS[objective] and task.settings()["objective"] == objective
    summary = train(task, config.train, tmp_path / "run")
    assert math.isfinite(summary["eval_main_loss"]) and math.isfinite(summary["eval_mlm_loss"])
    assert ("eval_disc_recall" in summary) == (objective == "electra_15")


# ------------------------------------------------ measures that see a weak discriminator

def brute_force_auc(scores: list[float], replaced: list[bool]) -> float:
    """Every (replaced, original) pair: 1 if the replaced one scores higher, 1/2 if tied."""
    pairs = [(s, t) for s, r in zip(scores, replaced) if r
             for t, q in zip(scores, replaced) if not q]
    return sum(1.0 if s > t else 0.5 if s == t else 0.0 for s, t in pairs) / len(pairs)


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.integers(-3, 3), min_size=2, max_size=30),  # few values: many ties
       flags=st.lists(st.booleans(), min_size=30, max_size=30))
def test_auc_is_the_pair_count_with_ties_as_halves(scores, flags):
    replaced = flags[: len(scores)]
    if all(replaced) or not any(replaced):
        assert math.isnan(replaced_auc(torch.tensor(scores), torch.tensor(replaced)))
        return
    expected = brute_force_auc([float(s) for s in scores], replaced)
    assert replaced_auc(torch.tensor(scores, dtype=torch.float), torch.tensor(replaced)) \
        == pytest.approx(expected, abs=1e-12)


def test_auc_of_a_perfect_a_reversed_and_a_constant_ranking():
    replaced = torch.tensor([True, False, True, False, False])
    assert replaced_auc(replaced.float(), replaced) == 1.0
    assert replaced_auc(-replaced.float(), replaced) == 0.0
    assert replaced_auc(torch.zeros(5), replaced) == 0.5


@pytest.mark.parametrize("fraction", [0.05, 0.13, 0.5, 0.9])
def test_the_constant_answer_loses_the_binary_entropy_of_the_replaced_fraction(fraction):
    n = 1000
    replaced = torch.arange(n) < round(fraction * n)
    weights = torch.ones(n, dtype=torch.bool)
    best = torch.full((n,), math.log(fraction / (1 - fraction)))  # log-odds of the fraction
    assert discriminator_loss(best, replaced, weights).item() == pytest.approx(
        binary_entropy(fraction), rel=1e-6)
    for other in (-3.0, 0.0, 2.0):  # every other constant does worse
        assert discriminator_loss(torch.full((n,), other), replaced, weights).item() \
            >= binary_entropy(fraction) - 1e-9


def test_the_summary_reports_auc_and_the_constant_answers_loss(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    assert main(["train", "electra", "--data", str(data), "--steps", "4", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(out), "--set", "eval_every=2",
                 "--set", "warm_start_steps=0", "--set", "eval_blocks=32", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["eval_disc_auc"] <= 1.0
    # the constant answer is judged where the detector is: positions the generator can fill
    assert summary["baseline_disc_loss"] == pytest.approx(
        binary_entropy(summary["eval_judged_replaced_fraction"]))
    assert summary["eval_judged_replaced_fraction"] > summary["eval_replaced_fraction"]
    assert summary["eval_disc_loss"] > 0 and summary["warm_start_steps"] == 0
    curve = [row["eval_disc_auc"] for row in read_metrics(out / "metrics.jsonl")
             if "eval_disc_auc" in row]
    assert len(curve) == 2, "a point of the curve at every evaluation"


# ------------------------------------------------------------------------- the warm start

def tiny_electra_config(data, dim: int = 32, **settings) -> ElectraConfig:
    return ElectraConfig(corpus=CorpusConfig(data=str(data), seq_len=32, vocab_size=400),
                         model=EncoderConfig(dim=dim, layers=1, heads=2, ffn_dim=64, dropout=0.0),
                         train=TrainConfig(steps=2, batch_size=8, eval_every=2,
                                           checkpoint_every=2, progress=False),
                         eval_blocks=16, **settings)


def test_the_warm_start_loads_exactly_the_named_mlm_encoder(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    mlm = tmp_path / "mlm"
    assert main(["train", "mlm", "--data", str(data), "--steps", "3", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(mlm), *TINY]) == 0
    task = ElectraTask(tiny_electra_config(data, init=str(mlm)))
    start = MaskedLanguageModel(task.model.encoder.config)
    load_model(start, str(latest_checkpoint(mlm) / "model.safetensors"))
    theirs = start.encoder.state_dict()
    ours = task.model.encoder.state_dict()
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name
    # the generator still reads the same table, now the MLM's
    shared = task.model.generator.encoder.embeddings.shared.token.weight
    assert shared is task.model.encoder.embeddings.token.weight
    assert task.warm_start_steps == 3


@pytest.mark.parametrize("objective", sorted(HYBRIDS))
def test_a_hybrid_gets_the_same_warm_start_as_electra(objective, tmp_path):
    """Table 5's arms all start from the MLM: the hybrid replaces ELECTRA's model, so it must be
    given the start again (its encoder equal to the MLM's, the shared table still shared)."""
    data = write_small_corpus(tmp_path / "small.txt")
    mlm = tmp_path / "mlm"
    assert main(["train", "mlm", "--data", str(data), "--steps", "3", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(mlm), *TINY]) == 0
    task = HybridTask(tiny_electra_config(data, init=str(mlm)), objective)
    start = MaskedLanguageModel(task.model.encoder.config)
    load_model(start, str(latest_checkpoint(mlm) / "model.safetensors"))
    ours = task.model.encoder.state_dict()
    for name, value in start.encoder.state_dict().items():
        assert torch.equal(ours[name], value), name
    assert task.model.generator.encoder.embeddings.shared.token.weight \
        is task.model.encoder.embeddings.token.weight
    assert task.warm_start_steps == 3
    # the twin: without the start, the same hybrid's encoder is not the MLM's
    fresh = HybridTask(tiny_electra_config(data, warm_start_steps=0), objective)
    assert not torch.equal(fresh.model.encoder.embeddings.token.weight,
                           start.encoder.embeddings.token.weight)


def test_table_5s_bert_arm_continues_the_start_head_included(tmp_path, monkeypatch):
    from labnotes.experiments import electra as page

    data = write_small_corpus(tmp_path / "small.txt")
    mlm = tmp_path / "mlm"
    assert main(["train", "mlm", "--data", str(data), "--steps", "3", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(mlm), *TINY]) == 0
    monkeypatch.setattr(page, "stage_config", lambda fraction, seed, **_: tiny_electra_config(
        data, init=str(mlm), generator_fraction=fraction or 0.25))
    task = page.build_arm("bert", None, 0, 5, quick=False, progress=False)
    start = MaskedLanguageModel(task.model.encoder.config)
    load_model(start, str(latest_checkpoint(mlm) / "model.safetensors"))
    ours = task.model.state_dict()
    for name, value in start.state_dict().items():
        assert torch.equal(ours[name], value), name
    assert task.config.train.steps == 5 and task.config.train.lr == 1e-3


def test_a_warm_start_of_another_shape_is_refused_clearly(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt")
    mlm = tmp_path / "mlm"
    assert main(["train", "mlm", "--data", str(data), "--steps", "2", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(mlm), *TINY]) == 0
    with pytest.raises(CheckpointError, match=r"dim 32 \(this run: 48\)"):
        ElectraTask(tiny_electra_config(data, dim=48, init=str(mlm)))
    out = tmp_path / "electra"
    assert main(["train", "electra", "--data", str(data), "--seq-len", "32", "--out", str(out),
                 "--set", f"init={mlm}", *TINY, "--set", "corpus.vocab_size=300"]) == 1
    assert "its corpus.vocab_size is 400, this run's 300" in capsys.readouterr().err
    assert main(["train", "electra", "--data", str(data), "--seq-len", "32", "--out", str(out),
                 "--set", f"init={mlm}", *TINY, "--set", "layers=2"]) == 1
    assert "layers 1 (this run: 2)" in capsys.readouterr().err
    assert not out.exists()


def test_without_init_the_page_trains_its_own_mlm_start_first(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    task = ElectraTask(tiny_electra_config(data, warm_start_steps=3))
    assert task.warm_start_steps == 3
    fresh = ElectraTask(tiny_electra_config(data, warm_start_steps=0))
    assert not torch.equal(task.model.encoder.embeddings.token.weight,
                           fresh.model.encoder.embeddings.token.weight)


def test_an_edited_data_file_trains_a_new_start_and_the_old_one_is_refused(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "data.txt", seed=0)
    config = tiny_electra_config(data, warm_start_steps=2)
    first = trained_start(config, 2)
    assert "training the MLM start" in capsys.readouterr().err
    assert trained_start(tiny_electra_config(data, warm_start_steps=2), 2) == first  # cached
    assert "training the MLM start" not in capsys.readouterr().err
    write_small_corpus(data, seed=1)  # other text in the same file, the same vocabulary size
    ElectraTask(tiny_electra_config(data, warm_start_steps=2))
    assert "training the MLM start" in capsys.readouterr().err
    assert trained_start(tiny_electra_config(data, warm_start_steps=2), 2) != first
    with pytest.raises(CheckpointError, match=r"SHA-256 [0-9a-f]{64}.*SHA-256 [0-9a-f]{64}"):
        ElectraTask(tiny_electra_config(data, init=str(first)))


def test_a_finished_run_reloads_without_its_start_and_trains_nothing(tmp_path, fresh_cache,
                                                                    capsys):
    data = write_small_corpus(tmp_path / "small.txt")
    mlm, out = tmp_path / "mlm", tmp_path / "electra"
    assert main(["train", "mlm", "--data", str(data), "--steps", "3", "--batch-size", "8",
                 "--seq-len", "32", "--out", str(mlm), *TINY]) == 0
    assert main(["train", "electra", "--data", str(data), "--seq-len", "32", "--steps", "2",
                 "--batch-size", "8", "--out", str(out), "--set", f"init={mlm}",
                 "--set", "eval_blocks=16", *TINY]) == 0
    default = tmp_path / "default"
    assert main(["train", "electra", "--data", str(data), "--seq-len", "32", "--steps", "2",
                 "--batch-size", "8", "--out", str(default), "--set", "warm_start_steps=2",
                 "--set", "eval_blocks=16", *TINY]) == 0
    shutil.rmtree(mlm)
    shutil.rmtree(fresh_cache / "mlm-starts")
    capsys.readouterr()
    for run, steps in ((out, 3), (default, 2)):
        _, _, task = load_run(run)
        weights = load_file(str(latest_checkpoint(run) / "model.safetensors"))
        ours = task.model.state_dict()
        for name, value in weights.items():  # (tied tensors are stored once)
            assert torch.equal(ours[name], value), name
        assert task.warm_start_steps == steps
        assert main(["eval", "electra", "--checkpoint", str(run), "--device", "cpu"]) == 0
        assert json.loads(capsys.readouterr().out)["warm_start_steps"] == steps
    assert not (fresh_cache / "mlm-starts").exists()  # nothing was trained again
    assert main(["train", "electra", "--data", str(data), "--seq-len", "32", "--steps", "2",
                 "--batch-size", "8", "--out", str(default), "--set", "warm_start_steps=2",
                 "--set", "eval_blocks=16", *TINY, "--resume"]) == 0
    assert not (fresh_cache / "mlm-starts").exists()
    assert json.loads((default / "summary.json").read_text())["warm_start_steps"] == 2


def test_the_bootstrap_interval_brackets_the_auc_and_resamples_whole_blocks():
    g = torch.Generator().manual_seed(0)
    blocks = torch.arange(40).repeat_interleave(25)  # 40 blocks of 25 tokens
    replaced = torch.rand(len(blocks), generator=g) < 0.2
    scores = replaced.float() + 1.5 * torch.randn(len(blocks), generator=g)
    low, high = bootstrap_auc(scores, replaced, blocks, resamples=100)
    assert low <= replaced_auc(scores, replaced) <= high and high - low < 0.2
    assert bootstrap_auc(scores, replaced, blocks, resamples=100) == (low, high)  # seeded


class SpecialsScoredHigh(torch.nn.Module):
    """A detector's logits with `[CLS]`, `[SEP]` and padding pushed far above the rest:
    `flat` answers 0 on every word, else the wrapped model's own logits are kept there."""

    def __init__(self, model: torch.nn.Module, flat: bool) -> None:
        super().__init__()
        self.model, self.flat = model, flat

    def __getattr__(self, name):  # the evaluation reads the model's weights (mlm_weight, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def forward(self, input_ids, labels, padding_mask, noise):
        out = self.model(input_ids, labels, padding_mask, noise)
        special = (input_ids == CLS_ID) | (input_ids == SEP_ID) | ~padding_mask
        words = torch.zeros_like(out["disc_logits"]) if self.flat else out["disc_logits"]
        out["disc_logits"] = torch.where(special, torch.full_like(words, 1e4), words)
        return out


def test_the_auc_leaves_out_cls_sep_and_padding(tmp_path):
    data = write_small_corpus(tmp_path / "small.txt")
    task = ElectraTask(tiny_electra_config(data, warm_start_steps=0))
    cpu = torch.device("cpu")
    task.model.eval()
    with torch.no_grad():
        own = task.evaluate(task.model, cpu)["eval_disc_auc"]
        only_specials = task.evaluate(SpecialsScoredHigh(task.model, flat=True), cpu)
        plus_specials = task.evaluate(SpecialsScoredHigh(task.model, flat=False), cpu)
    assert task.valid_padding.logical_not().any()  # the held-out rows do hold padding
    assert only_specials["eval_disc_auc"] == 0.5  # one score for every word: chance
    assert plus_specials["eval_disc_auc"] == pytest.approx(own, abs=1e-12)
    task.valid_candidates = task.valid_padding  # ranking every real token instead would
    with torch.no_grad():                       # reward the specials' scores
        assert task.evaluate(SpecialsScoredHigh(task.model, flat=True), cpu)[
            "eval_disc_auc"] < 0.5
