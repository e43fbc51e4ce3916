"""BART: the five noises' invariants (hypothesis), infilling's Poisson lengths (chi-square), the
decoder's causality, padding and cache, beam search against greedy decoding, label shifting
against Hugging Face, and a short `labnotes train bart` and `labnotes generate`."""

import dataclasses
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2, poisson

from labnotes.bart import (IGNORE, Chunk, add_noise, document_rotation, generate,
                           infilling_spans, parse_noise, sentence_permutation, seq2seq_loss,
                           shift_right, text_infilling, token_deletion, token_masking)
from labnotes.cli import main
from labnotes.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from labnotes.training import read_metrics
from labnotes.transformer import EncoderConfig, EncoderDecoder
from tests.test_cli import TINY, write_small_corpus

NUM_SPECIAL, VOCAB = 5, 60


def make_chunk(seed: int, sentences: int, max_words: int = 6) -> Chunk:
    generator = torch.Generator().manual_seed(seed)
    tokens, starts, sentence_ids = [], [], []
    for sentence in range(sentences):
        for _ in range(int(torch.randint(1, max_words + 1, (1,), generator=generator))):
            pieces = int(torch.randint(1, 4, (1,), generator=generator))
            tokens += torch.randint(NUM_SPECIAL, VOCAB, (pieces,), generator=generator).tolist()
            starts += [True] + [False] * (pieces - 1)
            sentence_ids += [sentence] * pieces
    return Chunk(torch.tensor(tokens), torch.tensor(starts), torch.tensor(sentence_ids))


cases = st.tuples(st.integers(0, 10_000), st.integers(1, 6),
                  st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0]))


@settings(max_examples=60, deadline=None)
@given(cases)
def test_masking_and_deletion_hide_exactly_their_share(case):
    seed, sentences, rate = case
    chunk = make_chunk(seed, sentences)
    n = len(chunk.tokens)
    masked = token_masking(chunk.tokens, rate, torch.Generator().manual_seed(seed))
    hidden = masked == MASK_ID
    assert len(masked) == n and int(hidden.sum()) == math.ceil(rate * n)
    assert torch.equal(masked[~hidden], chunk.tokens[~hidden])
    deleted = token_deletion(chunk.tokens, rate, torch.Generator().manual_seed(seed))
    assert len(deleted) == n - math.ceil(rate * n)
    remaining = iter(chunk.tokens.tolist())  # deletion keeps the rest in order
    assert all(any(token == other for other in remaining) for token in deleted.tolist())
    again = token_masking(chunk.tokens, rate, torch.Generator().manual_seed(seed))
    assert torch.equal(again, masked), "the same generator draws the same noise"


@settings(max_examples=80, deadline=None)
@given(cases)
def test_infilling_replaces_each_span_of_whole_words_by_one_mask(case):
    seed, sentences, rate = case
    chunk = make_chunk(seed, sentences)
    words = int(chunk.word_starts.sum())
    spans = infilling_spans(words, rate, 3.0, torch.Generator().manual_seed(seed))
    assert sum(length for _, length in spans) == math.ceil(rate * words)  # exactly the budget
    end = 0
    for first, length in spans:  # in order, no overlap, inside the text
        assert first >= end and length >= 0
        end = first + length
    assert end <= words
    noised = text_infilling(chunk.tokens, chunk.word_starts, rate, 3.0,
                            torch.Generator().manual_seed(seed))
    assert int((noised == MASK_ID).sum()) == len(spans)
    word_of = chunk.word_starts.long().cumsum(0) - 1
    hidden = torch.zeros(len(chunk.tokens), dtype=torch.bool)
    for first, length in spans:
        hidden |= (word_of >= first) & (word_of < first + length)
    assert torch.equal(noised[noised != MASK_ID], chunk.tokens[~hidden])  # the rest, in order


def test_infilling_span_lengths_are_poisson_3_with_zeros():
    lengths = []
    for seed in range(400):
        spans = infilling_spans(100, 0.3, 3.0, torch.Generator().manual_seed(seed))
        lengths += [length for _, length in spans[:-1]]  # the last one is cut to the budget
    counts = torch.bincount(torch.tensor(lengths), minlength=9).double()
    top = 8  # lengths 0..7 and "8 or more"
    observed = torch.cat([counts[:top], counts[top:].sum(0, keepdim=True)])
    expected = torch.tensor([poisson.pmf(k, 3.0) for k in range(top)] + [poisson.sf(top - 1, 3.0)])
    expected = expected * observed.sum()
    assert observed[0] > 100, "zero-length spans (insertions) appear"
    statistic = (((observed - expected) ** 2) / expected).sum().item()
    assert statistic < chi2.ppf(1 - 1e-6, df=top), (observed.tolist(), expected.tolist())
    # the check can fail: lengths clamped at >= 1 (a common reimplementation bug) are rejected
    clamped = torch.tensor(lengths).clamp(min=1)
    bad = torch.bincount(clamped, minlength=9).double()
    bad = torch.cat([bad[:top], bad[top:].sum(0, keepdim=True)])
    assert (((bad - expected) ** 2) / expected).sum().item() > chi2.ppf(1 - 1e-6, df=top)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6))
def test_permutation_moves_whole_sentences_and_rotation_is_a_rotation(seed, sentences):
    chunk = make_chunk(seed, sentences)
    chunk.tokens = torch.arange(NUM_SPECIAL, NUM_SPECIAL + len(chunk.tokens))  # all distinct
    permuted, starts = sentence_permutation(chunk.tokens, chunk.word_starts, chunk.sentence_ids,
                                            torch.Generator().manual_seed(seed))
    assert sorted(permuted.tolist()) == chunk.tokens.tolist()
    order = chunk.sentence_ids[permuted - NUM_SPECIAL]  # the sentence of each output token
    runs = torch.unique_consecutive(order)
    assert sorted(runs.tolist()) == list(range(sentences)), "each sentence once, in one piece"
    for sentence in runs.tolist():  # and inside a sentence the tokens keep their order
        inside = permuted[order == sentence]
        assert torch.equal(inside, chunk.tokens[chunk.sentence_ids == sentence])
    assert int(starts.sum()) == int(chunk.word_starts.sum()) and bool(starts[0])
    rotated = document_rotation(chunk.tokens, torch.Generator().manual_seed(seed))
    n = len(chunk.tokens)
    offsets = [k for k in range(1, max(n, 2)) if torch.equal(torch.roll(chunk.tokens, -k), rotated)]
    assert offsets or n < 2


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5),
       st.sampled_from(["masking", "deletion", "infilling", "permutation", "rotation",
                        "infilling+permutation", "permutation+masking+rotation"]))
def test_noised_inputs_keep_cls_and_sep_at_the_ends(seed, sentences, noise):
    chunk = make_chunk(seed, sentences)
    source = add_noise(chunk, noise, torch.Generator().manual_seed(seed))
    assert source[0] == CLS_ID and source[-1] == SEP_ID
    inner = source[1:-1]
    assert not ((inner < NUM_SPECIAL) & (inner != MASK_ID)).any()
    assert torch.equal(source, add_noise(chunk, noise, torch.Generator().manual_seed(seed)))
    if noise in ("permutation", "rotation"):
        assert sorted(inner.tolist()) == sorted(chunk.tokens.tolist())  # nothing hidden


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6))
def test_infilling_after_permutation_hides_whole_words_of_whole_sentences_in_a_new_order(
        seed, sentences):
    chunk = make_chunk(seed, sentences)
    chunk.tokens = torch.arange(NUM_SPECIAL, NUM_SPECIAL + len(chunk.tokens))  # all distinct
    inner = add_noise(chunk, "infilling+permutation", torch.Generator().manual_seed(seed))[1:-1]
    visible = inner[inner != MASK_ID]
    shown = torch.zeros(len(chunk.tokens), dtype=torch.bool)
    shown[visible - NUM_SPECIAL] = True
    word_of = chunk.word_starts.long().cumsum(0) - 1
    words = int(chunk.word_starts.sum())
    for word in range(words):  # a word is shown whole or hidden whole
        assert len(set(shown[word_of == word].tolist())) == 1
    hidden_words = len(set(word_of[~shown].tolist()))
    assert hidden_words == math.ceil(0.3 * words)  # the budget, counted in words
    order = chunk.sentence_ids[visible - NUM_SPECIAL]
    runs = torch.unique_consecutive(order)
    assert len(runs) == len(set(runs.tolist())), "each sentence's shown words stay together"
    for sentence in runs.tolist():
        inside = visible[order == sentence]
        assert bool((inside[1:] > inside[:-1]).all()), "and keep their order inside it"


def test_bad_noise_names_are_clear_errors():
    with pytest.raises(ValueError, match="use one of masking, deletion, infilling"):
        parse_noise("shuffle")
    with pytest.raises(ValueError, match="at most one of masking, deletion, infilling"):
        parse_noise("masking+infilling")


# ---------------------------------------------------------------- the decoder

CONFIG = EncoderConfig(vocab_size=VOCAB, max_len=24, dim=32, heads=4, ffn_dim=64, layers=2,
                       dropout=0.0)


def small_model(seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    model = EncoderDecoder(CONFIG).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def source_and_target(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(NUM_SPECIAL, VOCAB, (2, 10), generator=generator)
    source[:, 0], source[:, -1] = CLS_ID, SEP_ID
    labels = torch.randint(NUM_SPECIAL, VOCAB, (2, 8), generator=generator)
    return source, labels


def test_a_target_token_never_changes_earlier_logits_but_changes_later_ones():
    model = small_model()
    source, labels = source_and_target()
    decoder_input = shift_right(labels)
    with torch.no_grad():
        base = model(source, decoder_input)
        for t in range(1, decoder_input.shape[1]):
            changed = decoder_input.clone()
            changed[:, t] = NUM_SPECIAL + (changed[:, t] - NUM_SPECIAL + 3) % (VOCAB - NUM_SPECIAL)
            after = model(source, changed)
            torch.testing.assert_close(after[:, :t], base[:, :t], atol=1e-12, rtol=0)
            assert not torch.allclose(after[:, t:], base[:, t:])  # the twin: later ones move


def test_encoder_padding_changes_nothing():
    model = small_model()
    source, labels = source_and_target()
    decoder_input = shift_right(labels)
    padded = torch.cat([source, torch.full((2, 4), PAD_ID)], dim=1)
    with torch.no_grad():
        plain = model(source, decoder_input)
        with_pad = model(padded, decoder_input, padded != PAD_ID)
        garbage = padded.clone()
        garbage[:, -4:] = 9
        hidden_garbage = model(garbage, decoder_input, padded != PAD_ID)
        seen_garbage = model(garbage, decoder_input)
    torch.testing.assert_close(with_pad, plain, atol=1e-10, rtol=0)
    torch.testing.assert_close(hidden_garbage, plain, atol=1e-10, rtol=0)
    assert not torch.allclose(seen_garbage, plain)  # the twin: unmasked garbage is read


def test_cached_decoding_gives_the_logits_of_full_recomputation():
    model = small_model()
    source, labels = source_and_target()
    decoder_input = shift_right(labels)
    with torch.no_grad():
        full = model(source, decoder_input)
        memory = model.encoder(source)
        cache = [{} for _ in model.decoder.blocks]
        steps = [model.head(model.decoder(decoder_input[:, t:t + 1], memory, cache=cache,
                                          first_position=t)) for t in range(decoder_input.shape[1])]
        # a prefill of three tokens, then one at a time, is the same again
        cache = [{} for _ in model.decoder.blocks]
        prefill = model.head(model.decoder(decoder_input[:, :3], memory, cache=cache))
        rest = [model.head(model.decoder(decoder_input[:, t:t + 1], memory, cache=cache,
                                         first_position=t)) for t in range(3, 8)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.cat([prefill, *rest], dim=1), full, atol=1e-10, rtol=0)


def greedy_without_cache(model, source, max_new_tokens):
    prefix = [CLS_ID]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(source[None], torch.tensor([prefix]))[0, -1]
            token = int(logits.argmax())
            if token == SEP_ID:
                break
            prefix.append(token)
    return prefix[1:]


def test_beam_search_with_one_beam_is_greedy_decoding_and_wider_beams_score_no_worse():
    model = small_model()
    source, _ = source_and_target()
    for row in range(2):
        assert generate(model, source[row], max_new_tokens=12, beam_size=1) == \
            greedy_without_cache(model, source[row], 12)

    def score(tokens):
        with torch.no_grad():
            target = torch.tensor([tokens + [SEP_ID]])
            logits = model(source[:1], shift_right(target))
            return -F_cross(logits, target) / (len(tokens) + 1)

    greedy = generate(model, source[0], max_new_tokens=12, beam_size=1)
    beam = generate(model, source[0], max_new_tokens=12, beam_size=4)
    if len(greedy) < 12 and len(beam) < 12:  # both finished: the beam's answer scores as well
        assert score(beam) >= score(greedy) - 1e-9


def brute_force_best(model, source, longest, length_penalty):
    """Every text of at most `longest` tokens (any token but [SEP]) then [SEP], scored by full
    recomputation without a cache; the best one and its score."""
    import itertools
    best, best_score = None, float("-inf")
    others = [token for token in range(model.config.vocab_size) if token != SEP_ID]
    for length in range(longest + 1):
        for tokens in itertools.product(others, repeat=length):
            target = torch.tensor([[*tokens, SEP_ID]])
            with torch.no_grad():
                logits = model(source[None], shift_right(target))
            score = -F_cross(logits, target).item() / (length + 1) ** length_penalty
            if score > best_score:
                best, best_score = list(tokens), score
    return best, best_score


def wide_beam_case(seed: int) -> EncoderDecoder:
    """A float64 model over 5 specials and 3 words, in which ending is costly."""
    torch.manual_seed(seed)
    model = EncoderDecoder(dataclasses.replace(CONFIG, vocab_size=8)).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
        model.head.bias[SEP_ID] -= 3.0
    return model


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_beam_wide_enough_to_see_every_candidate_finds_the_brute_force_best(length_penalty,
                                                                                monkeypatch):
    """Texts of different lengths finish at different steps and beams are reordered at every
    step; with room for every candidate, beam search must return exactly the best text. Its twin
    keeps each beam's cache in the old order, and then it does not."""
    import labnotes.bart as bart
    source = torch.tensor([CLS_ID, 5, 6, 7, 6, SEP_ID])
    beams = 49 * 8  # every candidate of every step is looked at: an exhaustive search
    cases = [wide_beam_case(seed) for seed in (2, 5)]  # seeds where the order matters
    bests = [brute_force_best(model, source, 2, length_penalty)[0] for model in cases]
    assert {len(best) for best in bests} != {0}, "some best text must be written after a reorder"
    for model, best in zip(cases, bests):
        assert generate(model, source, max_new_tokens=3, beam_size=beams,
                        length_penalty=length_penalty) == best
    monkeypatch.setattr(bart, "reorder_cache", lambda cache, origin: None)
    assert any(generate(model, source, max_new_tokens=3, beam_size=beams,
                        length_penalty=length_penalty) != best
               for model, best in zip(cases, bests))


def test_generate_puts_a_training_model_back_in_training_mode():
    model = small_model().train()
    source, _ = source_and_target()
    generate(model, source[0], max_new_tokens=4, beam_size=2)
    assert model.training
    generate(model.eval(), source[0], max_new_tokens=4)
    assert not model.training


def test_a_cache_that_does_not_match_first_position_is_a_clear_error():
    model = small_model()
    source, labels = source_and_target()
    memory = model.encoder(source)
    cache = [{} for _ in model.decoder.blocks]
    model.decoder(shift_right(labels)[:, :3], memory, cache=cache, first_position=0)  # 3 held
    model.decoder(labels[:, 2:3], memory, cache=cache, first_position=3)  # continues: fine
    with pytest.raises(ValueError, match="first_position=2, but the cache holds 4 positions"):
        model.decoder(labels[:, 3:4], memory, cache=cache, first_position=2)


def F_cross(logits, target):
    return torch.nn.functional.cross_entropy(logits[0], target[0], reduction="sum")


def test_shift_right_matches_hugging_face():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bart.modeling_bart import shift_tokens_right

    labels = torch.tensor([[11, 12, 13, SEP_ID, IGNORE, IGNORE], [21, 22, 23, 24, 25, SEP_ID]])
    ours = shift_right(labels, start_id=CLS_ID)
    theirs = shift_tokens_right(labels, pad_token_id=PAD_ID, decoder_start_token_id=CLS_ID)
    assert torch.equal(ours, theirs)
    assert transformers.__version__


def test_the_loss_is_the_mean_over_every_target_token():
    model = small_model()
    source, labels = source_and_target()
    labels[1, 6:] = IGNORE  # a shorter second target
    loss, logits, answers = seq2seq_loss(model, source, labels)
    assert len(answers) == 14
    by_hand = []
    with torch.no_grad():
        for row in range(2):
            real = labels[row][labels[row] != IGNORE]
            prefix = torch.cat([torch.tensor([CLS_ID]), real[:-1]])[None]
            row_logits = model(source[row:row + 1], prefix)[0]
            by_hand += (-row_logits.log_softmax(-1).gather(1, real[:, None])).flatten().tolist()
    assert loss.item() == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-6)  # float32 loss


# ---------------------------------------------------------------- end to end

def test_train_bart_lowers_the_loss_and_generate_prints_text(tmp_path, capsys):
    data = write_small_corpus(tmp_path / "small.txt")
    out = tmp_path / "run"
    code = main(["train", "bart", "--data", str(data), "--steps", "200", "--batch-size", "16",
                 "--seq-len", "32", "--out", str(out), "--set", "eval_every=100",
                 "--set", "lr=5e-3", "--set", "eval_examples=64", *TINY])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = read_metrics(out / "metrics.jsonl")
    train_losses = [row["loss"] for row in rows if "loss" in row]
    evals = [row["eval_loss"] for row in rows if "eval_loss" in row]
    assert train_losses[-1] < train_losses[0] - 2.0 and evals[-1] < evals[0]
    assert summary["eval_loss"] < summary["baseline_entropy"] - 1.0
    assert summary["eval_accuracy"] > summary["baseline_accuracy"]
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(out), "the cat [MASK] the red ball ."]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed and "[MASK]" not in printed


def test_generate_on_a_run_that_cannot_generate_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "nothing"), "text"]) != 0
    assert "is not a labnotes run folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "bart", "--set", "noise=shuffle"], "use one of masking, deletion, infilling"),
    (["train", "bart", "--set", "noise=masking+deletion"], "at most one of masking, deletion"),
    (["train", "bart", "--set", "poisson_lambda=0"], "poisson_lambda must be positive"),
    (["train", "bart", "--set", "rate=1.5"], "rate must be between 0 and 1"),
    (["generate", "--checkpoint", "nowhere", "--beam", "0", "text"], "--beam: 0 must be at least 1"),
    (["generate", "--checkpoint", "nowhere", "--max-tokens", "-2", "text"], "must be at least 1"),
])
def test_bad_bart_settings_exit_2_with_the_reason_and_write_nothing(tmp_path, capsys, argv,
                                                                    message):
    out = tmp_path / "run"
    if argv[0] == "train":
        argv = [*argv, "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as stopped:  # argparse's own checks exit from inside
        code = stopped.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
