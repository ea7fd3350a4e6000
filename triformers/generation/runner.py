"""Feeds a model during generation: the prompt once, then one new token per step through a KV cache.

It hides the difference between the two generating families. Decoder-only (GPT-2, BLOOM): the
prompt is the start of the sequence; positions come from the attention mask as in transformers'
`_prepare_position_ids_for_generation` (`mask.cumsum(-1) - 1`, 0 on pads, then +1 per new token),
so left-padded rows count from their first real token. Encoder-decoder (T5, BART): the encoder
runs once; the decoder starts from `decoder_start_token_id` and its cross-attention keys and values
are computed on the first step and kept in the cache (`KVCache.cross`).

Everything sized by the generation is prepared once, for prompt + max_new_tokens positions: the KV
cache (sliding-window layers in rings of their window), and the masks, positions and rotary tables of
every step (`Stack.plan`: padding, causality, windows, ALiBi, T5's relative buckets, the cross-attention
padding). A step only slices views of these, with no host
synchronisation. `static=True` reads the whole cache every step, unwritten slots masked, with the
positions as a `cache_position` tensor: every step then has the same shapes (for a GPU graph later).
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
                 total_length: int, use_cache: bool, static: bool = False, encoded: torch.Tensor | None = None):
        self.model = model
        self.encoder_decoder = model.family == "encoder-decoder"
        device, dtype = model.device, model.dtype
        B = input_ids.shape[0] if input_ids is not None else encoded.shape[0]
        self.rows, self.encoded, stack = B, None, model.decoder
        self.positions = None  # without a cache, rotary types whose frequencies follow the length fed
        if self.encoder_decoder:
            if encoded is None:  # encoded: (B, S, H) states the caller computed (generate's encoder_outputs)
                encoded = model.encode(input_ids, attention_mask if padded else None)
            self.encoded = encoded.to(device=device, dtype=dtype)
            positions = (stack.position_ids(None, None, total_length, 0, device)  # (1, total)
                         if stack.positions is not None else None)
            self.plan = stack.plan(B, total_length, dtype, device, position_ids=positions,
                                   context_mask=attention_mask if padded else None, context_padded=padded)
        else:
            L = input_ids.shape[1]
            mask = attention_mask.long()
            prompt_positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (B, L)
            steps = torch.arange(1, total_length - L + 1, device=device)  # (new,)
            positions = torch.cat([prompt_positions, prompt_positions[:, -1:] + steps], dim=1)  # (B, total)
            full_mask = torch.cat([mask, mask.new_ones(B, total_length - L)], dim=1) if padded else None
            offset = model.config.position_offset if stack.positions is not None else 0  # OPT's table starts at 2
            self.plan = stack.plan(B, total_length, dtype, device, attention_mask=full_mask, padded=padded,
                                   position_ids=positions + offset if offset else positions,
                                   rotary_ids=positions if offset else None, first=L)
            if not use_cache and stack.rotary is not None and stack.rotary.length_dependent:
                self.positions = positions  # each forward feeds everything so far: its tables are remade
        self.cache = (KVCache.for_layers([block.attn for block in stack.layers], B, total_length, dtype, device,
                                         static=static) if use_cache else None)
        # static reads write at a position tensor, so that no step needs a host integer
        self.cache_position = torch.arange(total_length, device=device) if use_cache and static else None

    def logits(self, tokens: torch.Tensor, cur: int) -> torch.Tensor:
        start = self.cache.length if self.cache is not None else 0
        new = tokens[:, start:cur]  # (N, T): the prompt, one token, or (without a cache) everything
        position = self.cache_position[start:cur] if self.cache_position is not None else None
        if self.positions is not None:
            self.plan.rotary = self.model.decoder.rotary.tables(self.positions[:, :cur], self.plan.dtype)
        if self.encoder_decoder:
            out = self.model(decoder_input_ids=new, encoder_outputs=self.encoded, cache=self.cache, plan=self.plan,
                             cache_position=position, logits_to_keep=1, check=False)
        else:
            out = self.model(new, cache=self.cache, plan=self.plan, cache_position=position, logits_to_keep=1,
                             check=False)
        return out.logits[:, -1].float()  # (N, V)

    def select(self, index: torch.Tensor) -> None:
        """Keep (and repeat) rows: expanding to beams or return sequences, and following beam choices."""
        if self.cache is not None:
            self.cache.reorder(index)

    def expand(self, times: int) -> None:
        """Repeat every row `times` times (row b becomes rows b*times .. b*times + times - 1)."""
        if times == 1:
            return
        index = torch.arange(self.rows, device=self.model.device).repeat_interleave(times)
        self.rows *= times
        self.select(index)
        self.plan.select(index)
        if self.positions is not None:
            self.positions = self.positions.index_select(0, index)
        if self.encoded is not None:
            self.encoded = self.encoded.index_select(0, index)
