"""BERT's mask_tokens: invariants (hypothesis), rates within binomial bounds, and HF's collator."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labnotes.mlm import IGNORE, mask_tokens, select_positions

VOCAB = 500
MASK = 4
NUM_SPECIAL = 5


def random_batch(seed: int, batch: int, length: int, special_rate: float = 0.1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIAL, VOCAB, (batch, length), generator=generator)
    special = torch.rand(batch, length, generator=generator) < special_rate
    special[:, 0] = True
    ids[special] = torch.randint(0, NUM_SPECIAL, (int(special.sum()),), generator=generator)
    return ids, special


def binomial_bound(n: int, p: float, z: float = 5.0) -> float:
    """Half-width of a z-sigma interval for a binomial proportion (z=5: fails ~1 in 3.5 million)."""
    return z * math.sqrt(p * (1 - p) / n)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), batch=st.integers(1, 6), length=st.integers(1, 40),
       rate=st.floats(0.0, 1.0), whole_word=st.booleans())
def test_invariants(seed, batch, length, rate, whole_word):
    ids, special = random_batch(seed, batch, length)
    word_ids = None
    if whole_word:
        g = torch.Generator().manual_seed(seed + 1)
        starts = torch.rand(batch, length, generator=g) < 0.6
        word_ids = starts.long().cumsum(1) - 1
        word_ids = torch.where(special, torch.full_like(word_ids, -1), word_ids.clamp(min=0))
    g = torch.Generator().manual_seed(seed)
    inputs, labels = mask_tokens(ids, special, vocab_size=VOCAB, mask_id=MASK, rate=rate, whole_word_ids=word_ids,
                                 generator=g)
    selected = labels != IGNORE
    assert inputs.shape == ids.shape and labels.shape == ids.shape
    assert inputs.dtype == ids.dtype and labels.dtype == ids.dtype
    assert not (selected & special).any(), "a special token was selected"
    assert torch.equal(labels[selected], ids[selected]), "labels are the original tokens"
    assert torch.equal(inputs[~selected], ids[~selected]), "unselected positions are untouched"
    changed = inputs != ids
    assert not (changed & ~selected).any()
    # anything that changed is [MASK] or an ordinary token, never another special
    assert ((inputs[changed] == MASK) | (inputs[changed] >= NUM_SPECIAL)).all()
    if whole_word:  # a word is selected whole or not at all
        for b in range(batch):
            for w in word_ids[b].unique().tolist():
                if w >= 0:
                    in_word = (word_ids[b] == w) & ~special[b]
                    assert selected[b][in_word].all() or not selected[b][in_word].any()
    # determinism under a seeded generator
    again = mask_tokens(ids, special, vocab_size=VOCAB, mask_id=MASK, rate=rate, whole_word_ids=word_ids,
                        generator=torch.Generator().manual_seed(seed))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_rates_within_binomial_bounds():
    ids, special = random_batch(0, 400, 256)
    inputs, labels = mask_tokens(ids, special, vocab_size=VOCAB, mask_id=MASK, generator=torch.Generator().manual_seed(3))
    candidates = int((~special).sum())
    selected = labels != IGNORE
    n = int(selected.sum())
    assert abs(n / candidates - 0.15) < binomial_bound(candidates, 0.15)
    masked = int((selected & (inputs == MASK)).sum())
    kept = int((selected & (inputs == ids)).sum())
    randomised = n - masked - kept
    # a random draw can hit the original token: P = 1/(VOCAB-5) of the random 10%
    p_kept = 0.1 + 0.1 / (VOCAB - NUM_SPECIAL)
    assert abs(masked / n - 0.8) < binomial_bound(n, 0.8)
    assert abs(kept / n - p_kept) < binomial_bound(n, p_kept)
    assert abs(randomised / n - (0.1 - 0.1 / (VOCAB - NUM_SPECIAL))) < binomial_bound(n, 0.1)


def test_random_replacements_are_uniform_over_ordinary_tokens():
    ids = torch.full((2000, 64), 7)
    special = torch.zeros_like(ids, dtype=torch.bool)
    inputs, labels = mask_tokens(ids, special, vocab_size=30, mask_id=MASK, rate=1.0, mask_token_prob=0.0,
                                 random_token_prob=1.0, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(inputs.flatten(), minlength=30)
    assert counts[:NUM_SPECIAL].sum() == 0
    expected = ids.numel() / 25
    chi2 = (((counts[NUM_SPECIAL:] - expected) ** 2) / expected).sum().item()
    assert chi2 < 70  # chi-square with 24 dof: P(>70) ~ 2e-6


def test_whole_word_rate():
    batch, words, pieces = 300, 40, 3
    word_ids = torch.arange(words).repeat_interleave(pieces).repeat(batch, 1)
    special = torch.zeros_like(word_ids, dtype=torch.bool)
    selected = select_positions(special, 0.15, word_ids, torch.Generator().manual_seed(0))
    word_selected = selected[:, ::pieces]
    n = word_selected.numel()
    assert abs(word_selected.float().mean().item() - 0.15) < binomial_bound(n, 0.15)
    assert torch.equal(selected, word_selected.repeat_interleave(pieces, dim=1))


def test_same_distribution_as_huggingface_collator(tmp_path):
    """HF's DataCollatorForLanguageModeling on the same ids: same selection and 80/10/10 rates."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(195)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]")
    collator = transformers.DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15)
    torch.manual_seed(0)
    ids = torch.randint(NUM_SPECIAL, 200, (300, 128))
    ids[:, 0], ids[:, -1] = 2, 3
    special = (ids == 2) | (ids == 3)

    def rates(inputs, labels):
        selected = labels != -100
        n = int(selected.sum())
        masked = int((selected & (inputs == MASK)).sum())
        same = int((selected & (inputs == ids)).sum())
        return n, n / int((~special).sum()), masked / n, same / n

    ours = rates(*mask_tokens(ids, special, vocab_size=200, generator=torch.Generator().manual_seed(1)))
    hf_batch = collator([{"input_ids": row.tolist(), "special_tokens_mask": s.long().tolist()}
                         for row, s in zip(ids, special)])
    theirs = rates(hf_batch["input_ids"], hf_batch["labels"])
    n = min(ours[0], theirs[0])
    assert not (hf_batch["labels"] != -100)[special].any()
    for mine, reference, p in zip(ours[1:], theirs[1:], (0.15, 0.8, 0.1)):
        # two independent estimates of the same proportion: difference within 5 sigma of its spread
        assert abs(mine - reference) < binomial_bound(n, p) * math.sqrt(2), (ours, theirs)
