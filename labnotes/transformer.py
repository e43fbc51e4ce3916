"""The Transformer: encoder and decoder.

The one bidirectional Transformer that every paper page builds on: embeddings, pre-LayerNorm
blocks, attention that takes any mask (and keys and values from another stream), a
language-model head tied to the input embedding, and a decoder for the pages that generate.

"""

# %% [markdown]
# Every objective on this site trains the same network: a stack of Transformer blocks
# (Vaswani et al., 2017, arXiv:1706.03762) that reads a whole sequence at once and gives
# every position a vector that depends on every other position. BERT (arXiv:1810.04805, §3)
# calls it a *bidirectional* encoder. The papers differ in what goes in (which tokens are
# hidden or replaced) and what comes out (which head, which loss), not in this page.
#
# We write it once, small and explicit, so that a paper page only has to say what is new.
# Shapes: `B` batch, `T` sequence length, `D` model width, `H` heads, `V` vocabulary.

# %%
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# %% [markdown]
# ## Configuration
#
# The defaults are sized so that a 2-core CPU
# trains it in minutes: 2 layers, width 128, 2 heads, a feed-forward layer 4× wider. BERT-Base
# is the same network with `layers=12, dim=768, heads=12, ffn_dim=3072` (BERT §3).
# `num_segments=2` adds BERT's segment embedding for sentence-pair inputs (NSP, SOP).

# %%
@dataclass
class EncoderConfig:
    vocab_size: int = 8192
    max_len: int = 128  # longest sequence the position table covers
    dim: int = 128
    layers: int = 2
    heads: int = 2
    ffn_dim: int = 512
    dropout: float = 0.1
    num_segments: int = 0  # 0: no segment embedding; 2: sentence A / sentence B

    def __post_init__(self) -> None:
        if self.dim % self.heads != 0:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")


# %% [markdown]
# ## Embeddings
#
# A token becomes the sum of three learned vectors: what it is (token embedding), where it
# is (position embedding, learned as in BERT rather than sinusoidal), and, for sentence
# pairs, which segment it belongs to:
#
# $$x_t = E[w_t] + P[t] + S[s_t].$$
#
# Attention itself ignores order, so $P$ is the only thing that tells position 3 from
# position 30.

# %%
class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.dim)
        self.position = nn.Embedding(config.max_len, config.dim)
        self.segment = (
            nn.Embedding(config.num_segments, config.dim) if config.num_segments else None
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, segment_ids: Tensor | None = None,
                first_position: int = 0) -> Tensor:
        seq_len = first_position + input_ids.shape[1]  # a decoder step continues at its offset
        if seq_len > self.position.num_embeddings:
            raise ValueError(
                f"sequence length {seq_len} exceeds max_len={self.position.num_embeddings}; "
                "raise EncoderConfig.max_len"
            )
        positions = torch.arange(first_position, seq_len, device=input_ids.device)
        x = self.token(input_ids) + self.position(positions)  # [B, T, D]
        if self.segment is not None:
            if segment_ids is None:
                segment_ids = torch.zeros_like(input_ids)
            x = x + self.segment(segment_ids)
        return self.dropout(x)


# %% [markdown]
# ## Attention with any mask
#
# Each head compares a query $q_i$ with every key $k_j$ and mixes the values by the
# softmax of the scores:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_h}} + M\right) V,$$
#
# where $M_{ij} = 0$ if position $i$ may look at position $j$ and $-\infty$ otherwise.
# Two kinds of mask meet here. The **padding mask** `[B, T]` hides `[PAD]` keys, so a batch of
# sequences of different lengths gives each sequence the output it would have alone. The
# **attention mask** `[B, T, T]` is any per-example pattern: XLNet's permutation order and
# UniLM's left-to-right and prefix masks are just different $M$ (arXiv:1906.08237 §2.3;
# arXiv:1905.03197 §2). We combine both into one boolean mask and hand it to PyTorch's fused
# `scaled_dot_product_attention`, which picks the fastest kernel for the device.
#
# A query row that may see *nothing* would make the softmax divide by zero (NaN). We let such
# rows attend everywhere and then zero their output, so a fully hidden position carries no
# information rather than garbage.
#
# **Queries from one sequence, keys and values from another.** Usually $Q$, $K$ and $V$ are
# three projections of the same vectors $x$ `[B, T, D]` (self-attention). Give `context`
# `[B, S, D]` and the queries still come from $x$ while the keys and values come from
# `context`; the mask is then `[B, T, S]`. Two pages need this. XLNet's *query stream* asks
# questions of the *content stream* with the very same weights (arXiv:1906.08237, §2.3; see the
# [XLNet page](xlnet.md)), and an encoder-decoder's cross-attention lets the decoder read the
# encoder's output (arXiv:1706.03762, §3.2.3). The projection is the same matrix either way: its
# first third makes queries, the rest keys and values.
#
# **A cache for decoding.** A decoder that writes one token at a time would recompute the keys
# and values of every earlier position at every step. With `cache` (a dict the caller keeps
# per layer), self-attention appends the new positions' keys and values to the ones it stored
# and attends over all of them; cross-attention computes the context's keys and values once and
# reuses them. Generation then costs one position per step instead of the whole prefix.

# %%
class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.out = nn.Linear(config.dim, config.dim)
        self.dropout = config.dropout

    def forward(self, x: Tensor, allowed: Tensor | None, keep: Tensor | None = None,
                context: Tensor | None = None, cache: dict[str, Tensor] | None = None) -> Tensor:
        batch, seq_len, dim = x.shape
        if context is None:  # self-attention: one product makes q, k and v
            # each [B, H, T, D/H]
            q, k, v = (self.split_heads(t) for t in self.qkv(x).split(dim, dim=-1))
            if cache is not None:  # decoding: the new positions' keys after the earlier ones
                if "k" in cache:
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        else:  # queries from x [B, T, D]; keys and values from context [B, S, D]
            q = self.split_heads(F.linear(x, self.qkv.weight[:dim], self.qkv.bias[:dim]))
            if cache is not None and "k" in cache:  # the context does not change while decoding
                k, v = cache["k"], cache["v"]
            else:
                kv = F.linear(context, self.qkv.weight[dim:], self.qkv.bias[dim:])
                k, v = (self.split_heads(t) for t in kv.split(dim, -1))
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        empty_rows = None
        if allowed is not None:  # [B, T, S] bool, True = may attend
            empty_rows = ~allowed.any(dim=-1)  # [B, T]
            allowed = (allowed | empty_rows.unsqueeze(-1)).unsqueeze(1)  # [B, 1, T, S]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T, D/H]
        y = y.transpose(1, 2).reshape(batch, seq_len, dim)
        if empty_rows is not None:
            y = y.masked_fill(empty_rows.unsqueeze(-1), 0.0)
        if keep is not None:  # only these positions' outputs are wanted: [N, D]
            y = y[keep]
        return self.out(y)

    def split_heads(self, t: Tensor) -> Tensor:
        """[B, T, D] -> [B, H, T, D/H]."""
        return t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)


# %% [markdown]
# ## The block: pre-LayerNorm
#
# A block is attention then a position-wise feed-forward network, each wrapped in a residual
# connection. The original Transformer and BERT normalise *after* adding the residual
# (post-LN); we normalise *before* each sub-layer (pre-LN):
#
# $$h = x + \mathrm{Attention}(\mathrm{LN}(x)), \qquad y = h + \mathrm{FFN}(\mathrm{LN}(h)).$$
#
# Pre-LN keeps an identity path from input to output, so gradients stay well scaled and
# training is stable without a long warmup (Xiong et al., 2020, arXiv:2002.04745, §3). It is
# what GPT-2, the Cramming BERT (arXiv:2212.14034) and most modern encoders use. The
# feed-forward network is $\mathrm{FFN}(h) = W_2\,\mathrm{GELU}(W_1 h + b_1) + b_2$ with GELU as
# in BERT (arXiv:1606.08415).
#
# A block can also take its keys and values from another stream (`context`, as in the
# attention above). It normalises that stream with its own `attention_norm`, so a second stream
# run through the *same* block, as XLNet's query stream is, reads exactly the keys and values
# the block computes for its own input.

# %%
class FeedForward(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.dim, config.ffn_dim)
        self.down = nn.Linear(config.ffn_dim, config.dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.dim)
        self.attention = SelfAttention(config)
        self.feed_forward_norm = nn.LayerNorm(config.dim)
        self.feed_forward = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, allowed: Tensor | None, keep: Tensor | None = None,
                context: Tensor | None = None) -> Tensor:
        """`context`: read keys and values from this stream (normalised like x), not from x."""
        keys = None if context is None else self.attention_norm(context)
        attended = self.attention(self.attention_norm(x), allowed, keep, context=keys)
        if keep is not None:  # [B, T, D] -> [N, D]: the rest of the block runs at N positions
            x = x[keep]
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x


# %% [markdown]
# ## The encoder
#
# Embeddings, `layers` blocks, and a final LayerNorm (pre-LN leaves the last residual sum
# un-normalised, so we normalise once at the end).
#
# `padding_mask` `[B, T]` is `True` at real tokens. `attention_mask` `[B, T, T]` is `True`
# where query $i$ may look at key $j$. Both are optional; given together, a key must pass
# both. Without either, every position sees every other. A padding mask with no padding in
# it, given without an `attention_mask`, is dropped, so that the fused attention kernel runs
# without a mask; next to an `attention_mask` it is combined as usual.
#
# **Outputs at a few positions.** Many objectives score only some positions: MLM's loss
# reads the 15% it hid and nothing else. `output_positions` `[B, T]` (bool) says which, and the
# encoder then returns `[N, D]`, those positions' vectors in row-major order. Every block but
# the last must still run everywhere, because each position's keys and values feed the
# positions we keep. The *last* block's keys and values are needed everywhere too (and we let
# its attention run for every query: the kept positions of a batch are no rectangle), but its
# output projection, residual and feed-forward network only where we keep the result.
# Cutting there gives exactly the same numbers and gradients while skipping most of the last
# block's work. MosaicBERT's code has the same switch for its final layer (`subset_mask` and
# `subset_idx` in mosaicml/examples `bert_layers.py`; the model is Portes et al., 2023,
# arXiv:2312.17482), and so has flash-attention's BERT (`last_layer_subset` in
# Dao-AILab/flash-attention `flash_attn/models/bert.py`). A test checks both paths against
# each other, values and gradients.
#
# **Initialisation**, spelled out: every linear and embedding weight from
# $\mathcal{N}(0, 0.02^2)$, biases zero, LayerNorm scale one and shift zero — BERT's
# `initializer_range = 0.02` (google-research/bert `modeling.py`). One difference: BERT's
# `create_initializer` draws from a *truncated* normal (`tf.truncated_normal_initializer`
# redraws any value beyond two standard deviations, here $|w| > 0.04$); ours is not
# truncated. `nn.init.trunc_normal_(w, std=0.02, a=-0.04, b=0.04)` would match BERT, but every
# stored result on these pages was made with the plain normal, so we keep it.

# %%
class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(config.dim)
        self.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        *,
        padding_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        segment_ids: Tensor | None = None,
        output_positions: Tensor | None = None,
    ) -> Tensor:
        if attention_mask is None and padding_mask is not None and bool(padding_mask.all()):
            padding_mask = None  # nothing to hide: the unmasked attention kernel is faster
        allowed = combine_masks(padding_mask, attention_mask)
        x = self.embeddings(input_ids, segment_ids)  # [B, T, D]
        for index, block in enumerate(self.blocks):
            last = index == len(self.blocks) - 1
            x = block(x, allowed, output_positions if last else None)
        if output_positions is not None and not self.blocks:
            x = x[output_positions]
        return self.final_norm(x)  # [B, T, D], or [N, D] with output_positions


def combine_masks(padding_mask: Tensor | None, attention_mask: Tensor | None) -> Tensor | None:
    """One boolean [B, T, T] mask: query i may attend to key j."""
    if padding_mask is None and attention_mask is None:
        return None
    if attention_mask is None:
        return padding_mask[:, None, :].expand(-1, padding_mask.shape[1], -1)
    allowed = attention_mask.bool()
    if padding_mask is not None:
        allowed = allowed & padding_mask[:, None, :]
    return allowed


def init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# %% [markdown]
# ## The language-model head, tied to the embedding
#
# To predict a token at a position we map its vector back to the vocabulary. BERT's head
# (google-research/bert `get_masked_lm_output`) first applies a small transform, then scores
# every word by a dot product with the **input** embedding matrix $E$:
#
# $$\mathrm{logits} = \mathrm{LN}(\mathrm{GELU}(W h + b))\,E^\top + c.$$
#
# Reusing $E$ ("weight tying", Press & Wolf, 2017, arXiv:1608.05859) saves $V \times D$
# parameters and makes a word's input and output vectors the same. At our defaults that is
# 1,048,576 parameters: 72% of the encoder's 1,461,760, and 41% of the 2,535,296 that the
# encoder and head would have untied. The head takes any number of vectors `[N, D]`, so a
# paper can run it only at the positions it predicts (see the MLM page: that is most of our
# speed).

# %%
class LMHead(nn.Module):
    def __init__(self, config: EncoderConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Linear(config.dim, config.dim)
        self.norm = nn.LayerNorm(config.dim)
        self.embedding = embedding  # shared with the encoder: the same Parameter
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        init_weights(self.transform)

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.transform(hidden)))  # [N, D]
        return F.linear(h, self.embedding.weight, self.bias)  # [N, V]


# %% [markdown]
# ## The decoder, and an encoder-decoder
#
# Sequence-to-sequence objectives (BART on this site; T5 and MASS are the same network with
# other noise) add a second stack that *writes* text (Vaswani et al., arXiv:1706.03762, §3.1). A
# decoder block has three sub-layers, each pre-LN with a residual like the encoder's:
#
# 1. **causal self-attention**: position $t$ sees positions $\le t$ of what has been written,
#    never a later one, so the model can be run one token at a time;
# 2. **cross-attention**: queries from the decoder, keys and values from the encoder's output
#    (the attention's `context`), with the encoder's padding mask, so `[PAD]` in the input is
#    invisible to the decoder too;
# 3. the feed-forward network.
#
# The decoder has its own position table but shares the **token embedding** with the encoder
# and the output layer: one $V \times D$ matrix reads the input, reads the decoder's input and
# scores the output (BART's `share_all_embeddings`; Press & Wolf, arXiv:1608.05859). BART itself
# differs in three details that do not change the idea (fairseq `TransformerModel` and HF
# `BartConfig` as released): post-LN blocks, a LayerNorm right after the embeddings, and
# learned positions offset by two. We keep the site's pre-LN block so that the encoder is the
# very `Encoder` every other page trains.
#
# `cache` is a list with one dict per block (start with empty dicts): each step then feeds only
# the new token, at `first_position`, and the causal mask is not needed, since the cache holds
# only earlier positions.

# %%
class DecoderBlock(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.dim)
        self.self_attention = SelfAttention(config)
        self.cross_attention_norm = nn.LayerNorm(config.dim)
        self.cross_attention = SelfAttention(config)
        self.feed_forward_norm = nn.LayerNorm(config.dim)
        self.feed_forward = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, causal: Tensor | None, memory: Tensor,
                memory_allowed: Tensor | None, cache: dict | None = None) -> Tensor:
        own = None if cache is None else cache.setdefault("self", {})
        other = None if cache is None else cache.setdefault("cross", {})
        x = x + self.dropout(self.self_attention(self.self_attention_norm(x), causal, cache=own))
        x = x + self.dropout(self.cross_attention(self.cross_attention_norm(x), memory_allowed,
                                                  context=memory, cache=other))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class Decoder(nn.Module):
    def __init__(self, config: EncoderConfig, token_embedding: nn.Embedding) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(config.dim)
        self.apply(init_weights)
        self.embeddings.token = token_embedding  # the encoder's: one matrix for all three uses

    def forward(self, input_ids: Tensor, memory: Tensor, memory_padding_mask: Tensor | None = None,
                *, cache: list[dict] | None = None, first_position: int = 0) -> Tensor:
        """input_ids [B, T] (the target shifted right), memory [B, S, D] -> states [B, T, D]."""
        batch, length = input_ids.shape
        if cache is not None:  # the new tokens must continue exactly where the cache ends
            cached = cache[0].get("self", {}).get("k")
            held = 0 if cached is None else cached.shape[2]
            if held != first_position:
                raise ValueError(f"first_position={first_position}, but the cache holds {held} "
                                 "positions; pass the number of tokens already decoded")
        x = self.embeddings(input_ids, first_position=first_position)  # [B, T, D]
        causal = None  # one new token sees every cached one and itself: no mask needed
        if length > 1:
            keys = length + (first_position if cache is not None else 0)
            query_at = torch.arange(keys - length, keys, device=x.device)[:, None]  # [T, 1]
            causal = torch.arange(keys, device=x.device)[None, :] <= query_at  # [T, K]
            causal = causal.expand(batch, -1, -1)  # [B, T, K]: t sees <= t
        memory_allowed = None
        if memory_padding_mask is not None and not bool(memory_padding_mask.all()):
            memory_allowed = memory_padding_mask[:, None, :].expand(-1, length, -1)  # [B, T, S]
        for index, block in enumerate(self.blocks):
            x = block(x, causal, memory, memory_allowed, None if cache is None else cache[index])
        return self.final_norm(x)


class EncoderDecoder(nn.Module):
    """The shared Encoder reads the source; the Decoder writes the target; one tied head."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, self.encoder.embeddings.token)
        self.head = LMHead(config, self.encoder.embeddings.token)

    def forward(self, source_ids: Tensor, decoder_input_ids: Tensor,
                source_padding_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: logits [B, T, V] for every target position at once."""
        memory = self.encoder(source_ids, padding_mask=source_padding_mask)  # [B, S, D]
        return self.head(self.decoder(decoder_input_ids, memory, source_padding_mask))


# %% [markdown]
# ## Size check
#
# A quick look at what the defaults build. Run this cell in the notebook: the encoder has
# 1,461,760 parameters (about 1.5 M), 1,048,576 of them ($8192 \times 128$) in the embedding
# table that the head reuses.

# %%
def count_parameters(module: nn.Module) -> int:
    """Parameters counted once, even when shared (tied) between submodules."""
    return sum(p.numel() for p in module.parameters())


if __name__ == "__main__":
    demo_config = EncoderConfig()
    demo_encoder = Encoder(demo_config)
    demo_head = LMHead(demo_config, demo_encoder.embeddings.token)
    tokens = torch.randint(5, demo_config.vocab_size, (2, 16))
    hidden = demo_encoder(tokens, padding_mask=torch.ones(2, 16, dtype=torch.bool))
    print("hidden", tuple(hidden.shape), "logits", tuple(demo_head(hidden[0]).shape))
    print(f"encoder parameters: {count_parameters(demo_encoder):,}")
    token_scale = math.sqrt(demo_encoder.embeddings.token.weight.var().item())
    print(f"per-token scale of the init: {token_scale:.3f}")
