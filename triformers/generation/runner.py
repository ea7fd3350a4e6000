"""Feeds a model during generation: the prompt once, then one new token per step through a KV cache.

It hides the difference between the two generating families. Decoder-only (GPT-2, BLOOM): the
prompt is the start of the sequence; positions come from the attention mask as in transformers'
`_prepare_position_ids_for_generation` (`mask.cumsum(-1) - 1`, 0 on pads, then +1 per new token),
so left-padded rows count from their first real token. Encoder-decoder (T5, BART): the encoder
runs once; the decoder starts from `decoder_start_token_id` and its cross-attention keys and values
are computed on the first step and kept in the cache (`KVCache.cross`).

Everything sized by the generation (cache, mask, positions) is allocated once, for prompt +
max_new_tokens positions; a step only slices views of these buffers.
"""

from __future__ import annotations

import torch

from ..layers.attention import KVCache


class Runner:
    """One generate call's model inputs; `logits(tokens, cur)` gives next-token scores (N, V), float32.

    tokens: (N, >= cur) the sequences so far, whose first `cur` columns are valid; with a cache only
    the columns the cache has not seen yet are fed (the prompt on the first call, then one token).
    """

    def __init__(self, model, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, padded: bool,
                 total_length: int, use_cache: bool, encoded: torch.Tensor | None = None):
        self.model = model
        config = model.config
        self.encoder_decoder = model.family == "encoder-decoder"
        device = model.device
        B = input_ids.shape[0] if input_ids is not None else encoded.shape[0]
        self.mask = self.positions = self.encoded = self.context_mask = None
        if self.encoder_decoder:
            if encoded is None:  # encoded: (B, S, H) states the caller computed (generate's encoder_outputs)
                encoded = model.encode(input_ids, attention_mask if padded else None)
            self.encoded = encoded.to(device=device, dtype=model.dtype)
            self.context_mask = attention_mask if padded else None  # None: no per-step mask work in the model
            layers = config.decoder_layers
        else:
            L = input_ids.shape[1]
            mask = attention_mask.long()
            prompt_positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (B, L)
            steps = torch.arange(1, total_length - L + 1, device=device)  # (new,)
            self.positions = torch.cat([prompt_positions, prompt_positions[:, -1:] + steps], dim=1)  # (B, total)
            if padded:  # a mask over prompt + new positions; steps read its prefix
                self.mask = torch.cat([mask, mask.new_ones(B, total_length - L)], dim=1)  # (B, total)
            layers = config.num_layers
        self.cache = (KVCache(layers, B, config.decoder_heads, config.decoder_head_dim, total_length,
                              model.dtype, device) if use_cache else None)

    def logits(self, tokens: torch.Tensor, cur: int) -> torch.Tensor:
        start = self.cache.length if self.cache is not None else 0
        new = tokens[:, start:cur]  # (N, T): the prompt, one token, or (without a cache) everything
        if self.encoder_decoder:
            out = self.model(decoder_input_ids=new, attention_mask=self.context_mask, encoder_outputs=self.encoded,
                             cache=self.cache, logits_to_keep=1, check=False)
        else:
            mask = self.mask[:, :cur] if self.mask is not None else None
            out = self.model(new, attention_mask=mask, position_ids=self.positions[:, start:cur],
                             cache=self.cache, logits_to_keep=1, check=False)
        return out.logits[:, -1].float()  # (N, V)

    def select(self, index: torch.Tensor) -> None:
        """Keep (and repeat) rows: expanding to beams or return sequences, and following beam choices."""
        if self.cache is not None:
            self.cache.reorder(index)

    def expand(self, times: int) -> None:
        """Repeat every row `times` times (row b becomes rows b*times .. b*times + times - 1)."""
        if times == 1:
            return
        rows = next(t for t in (self.positions, self.encoded) if t is not None).shape[0]
        index = torch.arange(rows, device=self.model.device).repeat_interleave(times)
        self.select(index)
        for name in ("mask", "positions", "encoded", "context_mask"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))
