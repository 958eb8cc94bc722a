"""NeMo's MagpieTTS decoder stack (`transformer_2501.Transformer`), run one new position at a time.

NeMo's decoding reruns the whole prefix every frame, with or without its KV cache: the cache computes only the
newest query's attention, but `TransformerLayer.forward` concatenates the cached outputs back to full length, so
the norms and the position-wise FFN (and, in `infer_batch`, the code embeddings and the final projection) run over
every past frame at every step. Here each frame passes through the stack once:

- self-attention writes its keys and values into preallocated per-layer buffers (grown by doubling, never
  concatenated per step) and attends over the positions written so far;
- cross-attention keys and values are computed once per batch, from the text encoder's output;
- the norms and the FFN see only the new position (NeMo's FFN is a convolution; with kernel 1, as published, a
  position's output depends on that position alone).

Semantics are those of NeMo's cached path: each frame's attention prior applies once, at its own step (NeMo's
uncached path broadcasts the current prior row over every past frame, `benchmarks/kv_cache_divergence.md`). One
difference, deliberate: padded positions of the decoder context stay masked as keys at every step, as in NeMo's
uncached path and its training forward; NeMo's cache masks them only in the first call and lets every later frame
attend to them (keys of zero, score 0). With contexts of one length (no padding) the two are the same.

Generation runs in eval mode (NeMo's rollouts, DataGen and validation all do), so dropout is not applied here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from nemo.collections.tts.modules.ffn_modules import PositionwiseConvFF


class UnsupportedDecoder(ValueError):
    """The checkpoint's decoder has a feature this decoder does not compute frame by frame."""


def unsupported_reason(decoder) -> str | None:
    """Why `decoder` cannot be decoded one new frame at a time, or None when it can."""
    if not getattr(decoder, "layers", None):
        return "the decoder has no transformer layers"
    if getattr(decoder, "use_moe", False):
        return "the decoder's FFN is a mixture of experts"
    for layer in decoder.layers:
        if not isinstance(layer.pos_ff, PositionwiseConvFF):
            return f"the decoder's FFN is {type(layer.pos_ff).__name__}"
        if layer.pos_ff.proj.kernel_size != 1 or layer.pos_ff.o_net.kernel_size != 1:
            return (
                f"the decoder's FFN has kernel_size {layer.pos_ff.proj.kernel_size} (a frame's output then depends on "
                "the frames before it; the published decoder has 1)"
            )
        if not layer.self_attention.is_causal:
            return "the decoder's self-attention is not causal"
    return None


class IncrementalDecoder:
    """One rollout batch's decoding state for `decoder` (NeMo's `Transformer`, in eval mode).

    `start` runs the decoder input known before the first sampled frame (the decoder context, if any, and the
    BOS frame) as one causal block; each `step` then runs one new position. Both return the new positions' outputs
    (after `norm_out`) and, per layer, the cross-attention probabilities of the new positions, shaped as NeMo's
    `attn_probabilities` so NeMo's alignment helpers read them unchanged."""

    def __init__(self, decoder, capacity: int):
        reason = unsupported_reason(decoder)
        if reason is not None:
            raise UnsupportedDecoder(reason)
        self.decoder = decoder
        self.capacity = capacity
        self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.key_valid: torch.Tensor | None = None
        self.cross_keys: list[torch.Tensor | None] = []
        self.cross_values: list[torch.Tensor | None] = []
        self.cond_mask: torch.Tensor | None = None

    @torch.no_grad()
    def start(self, x, x_mask, cond, cond_mask, attn_prior=None):
        """x: (B, T0, d_model) embedded decoder input; x_mask: (B, T0); cond, cond_mask: the text encoder's output."""
        if self.decoder.training:
            raise RuntimeError("the incremental decoder generates in eval mode (call model.eval() first)")
        batch = x.size(0)
        self.cond_mask = cond_mask
        self.cross_keys, self.cross_values = [], []
        for layer in self.decoder.layers:
            if not (layer.has_xattn and cond is not None):
                self.cross_keys.append(None)
                self.cross_values.append(None)
                continue
            attention = layer.cross_attention
            memory = layer.norm_xattn_memory(cond)
            kv = attention.kv_net(memory).reshape(batch, memory.size(1), 2, attention.n_heads, attention.d_head)
            self.cross_keys.append(kv[:, :, 0].transpose(1, 2))
            self.cross_values.append(kv[:, :, 1].transpose(1, 2))
        self.capacity = max(self.capacity, x.size(1))
        self.key_valid = torch.zeros(batch, self.capacity, dtype=torch.bool, device=x.device)
        self.keys, self.values = [], []  # allocated by the first layer pass, in the dtype autocast gives
        self.length = 0
        return self._run(x, x_mask, attn_prior, first=True)

    @torch.no_grad()
    def step(self, x, attn_prior=None):
        """x: (B, 1, d_model), the newest frame's embedding. Returns its output (B, 1, d_model) and attention."""
        if self.length + x.size(1) > self.capacity:
            self._grow(max(2 * self.capacity, self.length + x.size(1)))
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self._run(x, mask, attn_prior, first=False)

    def _grow(self, capacity: int) -> None:
        def grown(buffer):
            bigger = buffer.new_empty(*buffer.shape[:2], capacity, buffer.size(3))
            bigger[:, :, : self.length] = buffer[:, :, : self.length]
            return bigger

        self.keys = [grown(k) for k in self.keys]
        self.values = [grown(v) for v in self.values]
        valid = self.key_valid.new_zeros(self.key_valid.size(0), capacity)
        valid[:, : self.length] = self.key_valid[:, : self.length]
        self.key_valid = valid
        self.capacity = capacity

    def _run(self, x, x_mask, attn_prior, first: bool):
        decoder = self.decoder
        begin, count = self.length, x.size(1)
        if decoder.use_learnable_pos_emb:
            positions = torch.arange(begin, begin + count, device=x.device).unsqueeze(0)
            x = x + decoder.position_embeddings(positions)
        self.key_valid[:, begin : begin + count] = x_mask
        attention = []
        for index, layer in enumerate(decoder.layers):
            prior = attn_prior[index] if isinstance(attn_prior, list) else attn_prior
            x, cross_probabilities = self._layer(index, layer, x, x_mask, prior, first)
            attention.append({"self_attn_probabilities": None, "cross_attn_probabilities": [cross_probabilities]})
        self.length = begin + count
        return decoder.norm_out(x), attention

    def _layer(self, index, layer, x, x_mask, prior, first: bool):
        begin, count = self.length, x.size(1)
        batch = x.size(0)
        keep = x_mask.unsqueeze(-1)
        x = x * keep

        attention = layer.self_attention
        qkv = attention.qkv_net(layer.norm_self(x)).reshape(batch, count, 3, attention.n_heads, attention.d_head)
        query, key, value = (qkv[:, :, part].transpose(1, 2) for part in range(3))
        if first:
            shape = (batch, attention.n_heads, self.capacity, attention.d_head)
            self.keys.append(key.new_empty(shape))
            self.values.append(value.new_empty(shape))
        self.keys[index][:, :, begin : begin + count] = key
        self.values[index][:, :, begin : begin + count] = value
        end = begin + count
        scores = torch.matmul(query, self.keys[index][:, :, :end].transpose(2, 3)) * attention.scale
        if first:
            # NeMo's first call: the query-by-key padding mask and the causal mask over the block.
            mask = (x_mask.unsqueeze(1) * x_mask.unsqueeze(2)).unsqueeze(1)
            scores.masked_fill_(mask == 0, float("-inf"))
            scores.masked_fill_(attention.causal_mask[..., :count, :count] == 0, float("-inf"))
            probabilities = F.softmax(scores, dim=-1).masked_fill(mask == 0, 0.0)
        else:
            scores.masked_fill_(~self.key_valid[:, None, None, :end], float("-inf"))
            probabilities = F.softmax(scores, dim=-1)
        mixed = torch.matmul(probabilities, self.values[index][:, :, :end])
        x = x + attention.o_net(mixed.transpose(1, 2).reshape(batch, count, -1))

        cross_probabilities = None
        if self.cross_keys[index] is not None:
            cross = layer.cross_attention
            query = cross.q_net(layer.norm_xattn_query(x)).reshape(batch, count, cross.n_heads, cross.d_head)
            scores = torch.matmul(query.transpose(1, 2), self.cross_keys[index].transpose(2, 3)) * cross.scale
            memory_mask = self.cond_mask[:, None, None]
            scores.masked_fill_(memory_mask == 0, float("-inf"))
            cross_probabilities = F.softmax(scores, dim=-1)
            if prior is not None:
                # NeMo's eval-mode prior: multiply, renormalise (its rows trimmed to the queries, [:, :T]).
                prior = prior[:, :count][:, None] + torch.finfo(prior.dtype).tiny
                cross_probabilities = cross_probabilities * prior
                cross_probabilities = cross_probabilities / cross_probabilities.sum(dim=-1, keepdim=True)
            cross_probabilities = cross_probabilities.masked_fill(memory_mask == 0, 0.0)
            mixed = torch.matmul(cross_probabilities, self.cross_values[index])
            x = x + cross.o_net(mixed.transpose(1, 2).reshape(batch, count, -1))

        ffn = layer.pos_ff
        hidden = _pointwise(ffn.proj.conv, layer.norm_pos_ff(x) * keep) * keep
        hidden = _pointwise(ffn.o_net.conv, ffn.non_linearity(hidden) * keep) * keep
        x = (x + hidden) * keep
        return x, cross_probabilities


def _pointwise(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-1 Conv1d on (B, T, C) as the matrix product it is (no transposes, no convolution setup per frame)."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)
