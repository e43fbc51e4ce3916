"""The shared encoder: masks are honoured, padding changes nothing, the head is tied."""

import math

import pytest
import torch
import torch.nn.functional as F

from labnotes.transformer import (
    Encoder,
    EncoderConfig,
    LMHead,
    SelfAttention,
    combine_masks,
    count_parameters,
)

SMALL = EncoderConfig(vocab_size=300, max_len=32, dim=32, layers=2, heads=4, ffn_dim=64,
                      dropout=0.0, num_segments=2)


def make_encoder(seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(SMALL).eval()


def test_output_shape_and_dtype():
    encoder = make_encoder()
    ids = torch.randint(5, 300, (3, 11))
    out = encoder(ids)
    assert out.shape == (3, 11, 32) and out.dtype == torch.float32


def test_padding_never_changes_real_positions():
    encoder = make_encoder()
    ids = torch.randint(5, 300, (1, 9))
    alone = encoder(ids, padding_mask=torch.ones(1, 9, dtype=torch.bool))
    for pad_length in (1, 7):
        for pad_value in (0, 123):  # whatever sits in the padded slots must not matter
            padded = torch.cat([ids, torch.full((1, pad_length), pad_value)], dim=1)
            mask = torch.cat([torch.ones(1, 9, dtype=torch.bool),
                              torch.zeros(1, pad_length, dtype=torch.bool)], 1)
            out = encoder(padded, padding_mask=mask)
            torch.testing.assert_close(out[:, :9], alone, atol=1e-5, rtol=1e-5)


def test_padding_in_a_batch_matches_each_sequence_alone():
    encoder = make_encoder()
    a, b = torch.randint(5, 300, (1, 12)), torch.randint(5, 300, (1, 5))
    batch = torch.cat([a, torch.cat([b, torch.zeros(1, 7, dtype=torch.long)], 1)])
    mask = batch != 0
    mask[0] = True
    out = encoder(batch, padding_mask=mask)
    torch.testing.assert_close(out[0:1], encoder(a), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:2, :5], encoder(b), atol=1e-5, rtol=1e-5)


def test_arbitrary_attention_mask_is_honoured():
    """A token a position may not see cannot change that position's output."""
    encoder = make_encoder()
    torch.manual_seed(1)
    ids = torch.randint(5, 300, (2, 10))
    allowed = torch.rand(2, 10, 10) < 0.5
    allowed |= torch.eye(10, dtype=torch.bool)  # every query sees itself
    out = encoder(ids, attention_mask=allowed)
    # Hide position 3 from everyone but itself, then change the token there.
    allowed_hidden = allowed.clone()
    allowed_hidden[:, :, 3] = False
    allowed_hidden[:, 3, 3] = True
    # Position 3 also must not influence others through a second layer: nobody else reads it at all.
    before = encoder(ids, attention_mask=allowed_hidden)
    changed = ids.clone()
    changed[:, 3] = (changed[:, 3] + 17) % 295 + 5
    after = encoder(changed, attention_mask=allowed_hidden)
    others = [i for i in range(10) if i != 3]
    torch.testing.assert_close(after[:, others], before[:, others], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(after[:, 3], before[:, 3])  # the test can fail: position 3 changes
    assert not torch.allclose(out, before)  # the mask matters


def test_causal_mask_is_left_to_right():
    encoder = make_encoder()
    ids = torch.randint(5, 300, (1, 8))
    causal = torch.tril(torch.ones(8, 8, dtype=torch.bool)).unsqueeze(0)
    full = encoder(ids, attention_mask=causal)
    prefix = encoder(ids[:, :5], attention_mask=causal[:, :5, :5])
    torch.testing.assert_close(full[:, :5], prefix, atol=1e-5, rtol=1e-5)


def test_row_that_sees_nothing_gives_zeros_not_nan():
    attention = SelfAttention(SMALL).eval()
    x = torch.randn(1, 4, 32)
    allowed = torch.ones(1, 4, 4, dtype=torch.bool)
    allowed[0, 2] = False
    y = attention(x, allowed)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[0, 2], attention.out.bias)


def test_attention_matches_the_formula():
    torch.manual_seed(0)
    attention = SelfAttention(SMALL).eval()
    x = torch.randn(2, 6, 32)
    allowed = torch.rand(2, 6, 6) < 0.7
    allowed |= torch.eye(6, dtype=torch.bool)
    q, k, v = attention.qkv(x).split(32, dim=-1)
    heads = lambda t: t.view(2, 6, 4, 8).transpose(1, 2)
    scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    expected = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(2, 6, 32)
    torch.testing.assert_close(attention(x, allowed), attention.out(expected), atol=1e-5, rtol=1e-5)


def test_combine_masks():
    padding = torch.tensor([[True, True, False]])
    allowed = combine_masks(padding, None)
    assert allowed.shape == (1, 3, 3) and not allowed[0, :, 2].any() and allowed[0, :, :2].all()
    custom = torch.tril(torch.ones(1, 3, 3, dtype=torch.bool))
    both = combine_masks(padding, custom)
    assert both[0, 2, 2].item() is False and both[0, 1, 0].item() is True
    assert both[0, 0, 1].item() is False


def test_segments_change_the_output():
    encoder = make_encoder()
    ids = torch.randint(5, 300, (1, 6))
    a = encoder(ids, segment_ids=torch.zeros(1, 6, dtype=torch.long))
    b = encoder(ids, segment_ids=torch.tensor([[0, 0, 0, 1, 1, 1]]))
    assert not torch.allclose(a, b)


def test_head_is_tied_to_the_embedding():
    encoder = make_encoder()
    head = LMHead(SMALL, encoder.embeddings.token)
    assert head.embedding.weight is encoder.embeddings.token.weight
    names = {name for name, _ in torch.nn.ModuleList([encoder, head]).named_parameters()}
    assert sum("token.weight" in n or "embedding.weight" in n for n in names) == 1  # counted once
    logits = head(torch.randn(4, 32))
    assert logits.shape == (4, 300)


def test_init_is_spelled_out():
    encoder = Encoder(EncoderConfig(dim=64, heads=2, vocab_size=4000))
    std = encoder.embeddings.token.weight.std().item()
    assert abs(std - 0.02) < 0.002
    assert torch.all(encoder.blocks[0].attention.qkv.bias == 0)
    assert torch.all(encoder.final_norm.weight == 1)


def test_default_size_is_the_one_the_page_states():
    encoder = Encoder(EncoderConfig())
    assert count_parameters(encoder) == 1_461_760
    assert encoder.embeddings.token.weight.numel() == 8192 * 128 == 1_048_576


def test_too_long_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="max_len"):
        make_encoder()(torch.zeros(1, 40, dtype=torch.long))


def test_bad_config():
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(dim=30, heads=4)


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_output_positions_give_the_same_vectors_and_gradients(layers):
    """Skipping the last block's work at unwanted positions changes no number and no gradient."""
    torch.manual_seed(2)
    config = EncoderConfig(vocab_size=300, max_len=32, dim=32, layers=layers, heads=4, ffn_dim=64,
                           dropout=0.0)
    encoder = Encoder(config).double().train()  # float64: any difference is a bug, not rounding
    ids = torch.randint(5, 300, (3, 12))
    padding = torch.ones(3, 12, dtype=torch.bool)
    padding[1, 8:] = False
    attention = torch.rand(3, 12, 12) < 0.6
    wanted = (torch.rand(3, 12) < 0.3) & padding
    wanted[0, 0] = True
    for attention_mask in (None, attention):
        full = encoder(ids, padding_mask=padding, attention_mask=attention_mask)[wanted]
        parameters = list(encoder.parameters())
        full_grads = torch.autograd.grad(full.square().sum(), parameters, allow_unused=True)
        some = encoder(ids, padding_mask=padding, attention_mask=attention_mask,
                       output_positions=wanted)
        some_grads = torch.autograd.grad(some.square().sum(), parameters, allow_unused=True)
        assert some.shape == (int(wanted.sum()), 32)
        torch.testing.assert_close(some, full, atol=1e-12, rtol=1e-10)
        for a, b in zip(full_grads, some_grads):
            if a is None or b is None:
                assert a is None and b is None
            else:
                torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10)
