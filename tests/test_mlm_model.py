"""The MLM model: no leak from the answer, sparse = dense loss, baselines, demo, experiment, bench."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from labnotes.mlm import IGNORE, MaskedLanguageModel, fill_in_the_blanks, mask_tokens, unigram_baselines
from labnotes.transformer import EncoderConfig

CONFIG = EncoderConfig(vocab_size=200, max_len=32, dim=32, layers=2, heads=2, ffn_dim=64, dropout=0.0)


def masked_batch(seed=0):
    torch.manual_seed(seed)
    model = MaskedLanguageModel(CONFIG).eval()
    ids = torch.randint(5, 200, (4, 16))
    ids[:, 0], ids[:, -1] = 2, 3
    special = (ids == 2) | (ids == 3)
    inputs, labels = mask_tokens(ids, special, vocab_size=200, rate=0.3, generator=torch.Generator().manual_seed(seed))
    return model, ids, inputs, labels


def test_the_answer_cannot_leak_into_the_prediction():
    """Change the hidden token (the label) at masked positions: the predictions there must not move."""
    model, ids, inputs, labels = masked_batch()
    _, logits = model(inputs, labels)
    other_answers = labels.clone()
    selected = labels != IGNORE
    other_answers[selected] = (labels[selected] - 5 + 1) % 195 + 5
    _, logits_other = model(inputs, other_answers)
    torch.testing.assert_close(logits, logits_other, atol=0, rtol=0)
    # The same answer hidden behind [MASK] in the input cannot be seen either: the input is identical.
    original = ids.clone()
    masked_positions = selected & (inputs == 4)
    original[masked_positions] = (original[masked_positions] + 7 - 5) % 195 + 5
    again, labels_again = mask_tokens(original, (ids == 2) | (ids == 3), vocab_size=200, rate=0.3,
                                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, inputs)


def test_the_prediction_does_depend_on_the_visible_context():
    """Guard against a leak test that cannot fail: visible tokens do move the prediction."""
    model, ids, inputs, labels = masked_batch()
    _, logits = model(inputs, labels)
    visible = (labels == IGNORE) & (ids > 4)
    changed = inputs.clone()
    b, t = visible.nonzero()[0]
    changed[b, t] = (changed[b, t] - 5 + 11) % 195 + 5
    _, logits_changed = model(changed, labels)
    assert not torch.allclose(logits, logits_changed)


def test_sparse_and_dense_prediction_give_the_same_loss():
    model, ids, inputs, labels = masked_batch(1)
    sparse_loss, _ = model(inputs, labels)
    dense_logits = model.predict_all(inputs)  # [B, T, V]
    dense_loss = F.cross_entropy(dense_logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    torch.testing.assert_close(sparse_loss, dense_loss, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_the_loss():
    model, ids, inputs, labels = masked_batch(2)
    loss, _ = model(inputs, labels, torch.ones_like(inputs, dtype=torch.bool))
    padded_inputs = torch.cat([inputs, torch.zeros(4, 5, dtype=torch.long)], 1)
    padded_labels = torch.cat([labels, torch.full((4, 5), IGNORE)], 1)
    loss_padded, _ = model(padded_inputs, padded_labels, padded_inputs != 0)
    torch.testing.assert_close(loss, loss_padded, atol=1e-5, rtol=1e-5)


def test_unigram_baselines_by_hand():
    train_ids = torch.tensor([[2, 5, 5, 5, 6, 3, 0]])  # specials are ignored
    valid_labels = torch.tensor([[IGNORE, 5, 6, IGNORE, 7]])
    result = unigram_baselines(train_ids, valid_labels, vocab_size=8)
    # add-one counts over the whole vocabulary: 5 -> 4, 6 -> 2, others 1; total 4 + 2 + 6 = 12
    expected = -(math.log(4 / 12) + math.log(2 / 12) + math.log(1 / 12)) / 3
    assert result["baseline_entropy"] == pytest.approx(expected)
    assert result["baseline_accuracy"] == pytest.approx(1 / 3)


def test_fill_in_the_blanks_returns_one_list_per_mask():
    from labnotes.tokenizer import Tokenizer

    class Words:
        vocab_size = 200

        def encode(self, text):
            return [5 + (hash(w) % 100) for w in text.split()]

        def id_to_token(self, i):
            return f"w{i}"

    torch.manual_seed(0)
    guesses = fill_in_the_blanks(MaskedLanguageModel(CONFIG), Words(), "a [MASK] b [MASK] c", top_k=2)
    assert len(guesses) == 2 and all(len(g) == 2 for g in guesses)
    assert all(not g.startswith("w") or int(g[1:]) >= 5 for gs in guesses for g in gs)  # never a special


def test_experiment_quick_writes_what_the_page_shows(tmp_path):
    from labnotes.cli import main

    out = tmp_path / "results"
    assert main(["experiment", "mlm", "--quick", "--out", str(out), "--no-progress"]) == 0
    for name in ("results.json", "table.md", "loss.svg", "command.txt"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 3 and results["quick"] is True
    assert "labnotes experiment mlm --quick" in (out / "command.txt").read_text()
    assert "| BERT 80/10/10, dynamic |" in (out / "table.md").read_text()


def test_bench_reports_a_ratio():
    from labnotes.bench import describe, run_benchmark

    result = run_benchmark(steps=1, rounds=2, batch_size=4, seq_len=16, device="cpu", config=CONFIG)
    assert result["ratio"] > 0 and set(result["tokens_per_s"]) == {"labnotes", "transformers"}
    assert len(result["ratio_per_round"]) == 2
    line = describe(result)
    assert line.startswith("mlm on cpu (") and f"{result['ratio']:.2f}x (median of 2 rounds" in line


def test_unigram_log_probs_by_hand():
    from labnotes.mlm import unigram_log_probs

    log_q = unigram_log_probs(torch.tensor([[2, 5, 5, 5, 6, 3, 0]]), vocab_size=8)
    expected = torch.tensor([1, 1, 1, 1, 1, 4, 2, 1], dtype=torch.float64) / 12
    torch.testing.assert_close(log_q, expected.log())


@pytest.mark.parametrize("unigram_bias", [True, False])
def test_the_output_bias_starts_at_the_unigram_distribution(tmp_path, unigram_bias):
    """With the unigram bias the untrained model already scores the unigram cross-entropy; without, log V."""
    from labnotes.tokenizer import CorpusConfig
    from labnotes.mlm import MLMConfig, MLMTask, unigram_log_probs
    from tests.test_cli import write_small_corpus

    corpus = CorpusConfig(data=str(write_small_corpus(tmp_path / "small.txt")), seq_len=32, vocab_size=400)
    model = EncoderConfig(vocab_size=400, max_len=32, dim=32, layers=1, heads=2, ffn_dim=64, dropout=0.0)
    config = MLMConfig(corpus=corpus, model=model, unigram_bias=unigram_bias)
    task = MLMTask(config)
    log_q = unigram_log_probs(task.train_blocks.input_ids, task.tokenizer.vocab_size).float()
    bias = task.model.head.bias.detach()
    if unigram_bias:
        torch.testing.assert_close(bias, log_q)
    else:
        assert bias.abs().max() == 0
    result = task.evaluate(task.model.eval(), torch.device("cpu"))
    start = result["baseline_entropy"] if unigram_bias else math.log(task.tokenizer.vocab_size)
    assert abs(result["eval_loss"] - start) < 0.2, (result["eval_loss"], start)


def test_top1_correct_is_argmax_accuracy():
    from labnotes.mlm import top1_correct

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 300, generator=generator)
    targets = torch.randint(300, (500,), generator=generator)
    targets[:100] = logits[:100].argmax(-1)  # a fifth are right, the rest almost all wrong
    assert torch.equal(top1_correct(logits, targets), logits.argmax(-1) == targets)
    assert top1_correct(logits, targets).sum() >= 100
