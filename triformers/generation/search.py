"""`generate`: checks its arguments, prepares the decode state once, and runs greedy search, multinomial
sampling (this file) or beam search (`beam.py`), token for token as transformers.

The sampling loop follows transformers v5.24 `GenerationMixin._sample` (`generation/utils.py`):
processors see the scores in float32; finished rows continue with `pad_token_id`.

Speed: the prompt is fed once (once per prompt, not once per beam), each step feeds one token per
row through a preallocated KV cache, token buffers are allocated for the whole generation, and a
step synchronises with the device once, to decide whether to stop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from .beam import beam_search
from .options import GenerationOptions, eos_tensor, resolve_options
from .processors import Processors, build_processors, no_token_error, unusable
from .runner import Runner

def _padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  options: GenerationOptions) -> torch.Tensor:
    """The prompt's mask; without one, inferred from pad tokens as transformers does (unless pad is an EOS)."""
    if attention_mask is not None:
        return attention_mask
    pad = options.pad_token_id
    if pad is not None and pad not in options.eos_token_ids and bool((input_ids == pad).any()):
        return input_ids.ne(pad).long()
    return torch.ones_like(input_ids)


@torch.no_grad()
def generate(model, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
             streamer: Any = None, **kwargs: Any) -> torch.Tensor:
    """Generate token ids; see `TransformerModel.generate` for the arguments.

    Returns (batch * num_return_sequences, length) ids: the prompt followed by the new tokens for a
    decoder-only model, the decoder ids (starting with decoder_start_token_id) for an encoder-decoder.
    """
    name = type(model).__name__
    if model.family not in ("decoder", "encoder-decoder"):
        raise InputError(f"generate: {name} is an encoder-only ({model.config.model_type}) model and cannot "
                         "generate text; load a decoder (AutoModelForCausalLM) or encoder-decoder "
                         "(AutoModelForSeq2SeqLM) checkpoint")
    if model.head != "lm":
        raise InputError(f"generate: {name} has the {model.head!r} head; generation needs the language-model "
                         "head (AutoModelForCausalLM / AutoModelForSeq2SeqLM)")
    model.check_inputs(input_ids, attention_mask)
    device = model.device
    input_ids = input_ids.to(device=device, dtype=torch.long)
    attention_mask = attention_mask.to(device) if attention_mask is not None else None
    B = input_ids.shape[0]
    decoder_only = model.family == "decoder"
    L = input_ids.shape[1] if decoder_only else 1  # decoder positions before the first new token
    options = resolve_options(model, L, **kwargs)
    if streamer is not None and not all(callable(getattr(streamer, m, None)) for m in ("put", "end")):
        raise InputError(f"generate: streamer must have put(ids) and end() methods (e.g. TextStreamer), "
                         f"got {type(streamer).__name__}")
    if streamer is not None and (B > 1 or options.num_beams > 1 or options.num_return_sequences > 1):
        raise InputError("generate: a streamer follows one sequence; use it with one prompt, num_beams=1 "
                         "and num_return_sequences=1")
    mask = _padding_mask(input_ids, attention_mask, options)
    padded = not bool(mask.all())
    total = L + options.max_new_tokens
    runner = Runner(model, input_ids, mask, padded, total, options.use_cache, options.static_cache)
    prompt = (input_ids if decoder_only
              else torch.full((B, 1), options.decoder_start_token_id, dtype=torch.long, device=device))
    if options.num_beams > 1:
        expand = options.num_beams
    else:
        expand = options.num_return_sequences  # >1 only when sampling
    padding_lengths = None
    if decoder_only and padded:  # repetition penalty skips each row's left padding
        padding_lengths = (mask != 0).int().argmax(dim=1).repeat_interleave(expand)
    processors = build_processors(options, L, model.config.vocab_size, padding_lengths, device)
    if options.num_beams > 1:
        return beam_search(runner, prompt, options, processors)
    return sample(runner, prompt, options, processors, streamer)


def sample(runner: Runner, prompt: torch.Tensor, options: GenerationOptions, processors: Processors,
           streamer: Any = None) -> torch.Tensor:
    """Greedy search (argmax) or multinomial sampling, one row per prompt and return sequence."""
    B, L = prompt.shape
    R = options.num_return_sequences
    tokens = prompt.new_empty(B * R, L + options.max_new_tokens)  # (N, total), filled left to right
    tokens[:, :L] = prompt.repeat_interleave(R, dim=0)
    eos = eos_tensor(options, prompt.device)
    unfinished = torch.ones(B * R, dtype=torch.bool, device=prompt.device)
    if streamer is not None:
        streamer.put(prompt.cpu())
    cur = L
    failed = torch.zeros((), dtype=torch.bool, device=prompt.device)  # a row had no token to choose
    for step in range(options.max_new_tokens):
        if step == 0:  # the prompt is fed once per prompt, then repeated for each return sequence
            logits = runner.logits(prompt, cur).repeat_interleave(R, dim=0)
            runner.expand(R)
        else:
            logits = runner.logits(tokens, cur)
        scores = processors(tokens[:, :cur], logits)
        if options.do_sample:
            probs = F.softmax(scores, dim=-1)
            bad = probs.isnan().any(dim=-1)  # NaN scores, +inf scores, or every token at -inf
            probs = probs.masked_fill(bad[:, None], 1.0)  # a valid stand-in (never a device assert); refused below
            next_tokens = torch.multinomial(probs, num_samples=1, generator=options.generator).squeeze(1)
        else:
            bad = unusable(scores)
            next_tokens = torch.argmax(scores, dim=-1)
        failed |= bad.any()
        if eos is not None:  # finished rows continue with padding
            next_tokens = torch.where(unfinished, next_tokens, options.pad_token_id)
        tokens[:, cur] = next_tokens
        cur += 1
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        if eos is not None:
            unfinished &= ~torch.isin(next_tokens, eos)
            alive, broken = torch.stack((unfinished.any(), failed)).tolist()  # the step's one synchronisation
            if broken:
                raise no_token_error(options, step)
            if not alive:
                break
    if bool(failed):  # without EOS ids nothing synchronised during the loop
        raise no_token_error(options, None)
    if streamer is not None:
        streamer.end()
    return tokens[:, :cur]
