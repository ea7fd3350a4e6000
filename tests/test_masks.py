"""Masks prepared once per call (layers/masks.py) and the KV cache written at a position index.

A plan's step masks must equal, exactly, the masks a step would build from scratch (the bias over
(queries, keys), `torch.where(causal & padding, bias, dtype's min)`, as the per-step code did before
the plan), for every slice a caller takes: the prompt, one token, a chunk in the middle, a static
read of all slots, and rows picked by a `cache_position` tensor. Exact, because the plan only
reorders where the same values come from. Static reads of the cache must give the logits of prefix
reads (fp32 atol 1e-5: SDPA sums over more, all-masked, keys) and the same tokens; a padded generate
must synchronise with the device once per step, for its stop check, and never for its masks.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from triformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM
from triformers.errors import InputError
from triformers.generation.runner import Runner
from triformers.layers import KVCache
from triformers.layers.masks import padding_bias
from triformers.layers.positions import alibi_bias, relative_position_bucket

SMALL = {
    "gpt2": dict(n_layer=2, n_embd=24, n_head=3, vocab_size=50, n_positions=32, bos_token_id=1, eos_token_id=2),
    "bloom": dict(n_layer=2, hidden_size=24, n_head=6, vocab_size=50, bos_token_id=1, eos_token_id=2),
    "t5": dict(vocab_size=50, d_model=24, d_kv=8, d_ff=32, num_layers=2, num_heads=3, decoder_start_token_id=0,
               pad_token_id=0, eos_token_id=1),
    "bart": dict(vocab_size=50, d_model=24, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
                 decoder_attention_heads=3, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32),
    "bert": dict(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=32,
                 max_position_embeddings=32),
}
CLASSES = {"gpt2": AutoModelForCausalLM, "bloom": AutoModelForCausalLM, "t5": AutoModelForSeq2SeqLM,
           "bart": AutoModelForSeq2SeqLM, "bert": AutoModelForMaskedLM}
N = 11  # positions of the call


def tiny(kind: str, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, initializer_range=0.5, **SMALL[kind])
    return CLASSES[kind].from_config(config).eval().to(dtype)


def left_padded(batch: int = 3, length: int = N) -> torch.Tensor:
    """(B, length) mask; row b has 2 b pads on the left (row 0 none)."""
    return (torch.arange(length)[None, :] >= 2 * torch.arange(batch)[:, None]).long()


def from_scratch(stack, mask: torch.Tensor | None, start: int, length: int, keys: int,
                 dtype: torch.dtype) -> torch.Tensor:
    """(B|1, nh|1, T, keys): the mask of one step built on its own, as before the plan existed."""
    query = torch.arange(start, start + length)[:, None]
    key = torch.arange(keys)[None, :]
    bias = torch.zeros((), dtype=dtype)
    if stack.rel_bias is not None:
        rel = stack.rel_bias
        buckets = relative_position_bucket(key - query, rel.bidirectional, rel.num_buckets, rel.max_distance)
        bias = rel.embed(buckets).permute(2, 0, 1)[None].to(dtype)  # (1, nh, T, keys)
    if stack.config.positions == "alibi":
        ones = mask if mask is not None else torch.ones(1, keys, dtype=torch.long)
        bias = alibi_bias(ones[:, :keys], stack.layers[0].attn.num_heads, dtype)  # (B, nh, 1, keys)
    keep = key <= query if stack.causal else torch.ones(length, keys, dtype=torch.bool)
    if mask is not None:
        keep = keep & mask[:, None, None, :keys].bool()
    return torch.where(keep, bias, torch.finfo(dtype).min)


def materialise(mask: torch.Tensor | None, is_causal: bool, length: int, keys: int, dtype) -> torch.Tensor:
    if mask is not None:
        return mask
    keep = torch.ones(length, keys, dtype=torch.bool).tril(keys - length) if is_causal else True
    return torch.where(torch.as_tensor(keep), torch.zeros((), dtype=dtype), torch.finfo(dtype).min)


# (start, length, static): the prompt, single tokens, a chunk, static reads
SLICES = [(0, N, False), (0, 1, False), (4, 1, False), (N - 1, 1, False), (3, 5, False), (0, 4, True),
          (6, 1, True), (N - 1, 1, True)]


@pytest.mark.parametrize("kind, stack_name, padded, dtype", [
    ("gpt2", "decoder", True, torch.float32), ("gpt2", "decoder", False, torch.float32),
    ("bloom", "decoder", True, torch.float32), ("bloom", "decoder", False, torch.float32),
    ("bloom", "decoder", True, torch.bfloat16),
    ("t5", "decoder", True, torch.float32), ("t5", "decoder", False, torch.float32),
    ("t5", "decoder", True, torch.bfloat16), ("t5", "encoder", True, torch.float32),
    ("t5", "encoder", False, torch.float32), ("bert", "encoder", True, torch.float32),
    ("bert", "encoder", False, torch.float32),
])
@torch.no_grad()
def test_plan_slices_equal_masks_built_from_scratch(kind, stack_name, padded, dtype):
    stack = getattr(tiny(kind, dtype), stack_name)
    mask = left_padded() if padded else None
    plan = stack.plan(3, N, dtype, "cpu", attention_mask=mask)
    slices = SLICES if stack.causal else [(0, N, False)]
    for start, length, static in slices:
        keys = N if static else start + length
        got, is_causal = plan.self_attention(start, length, static)
        want = from_scratch(stack, mask, start, length, keys, dtype)
        got = materialise(got, is_causal, length, keys, dtype)
        assert got.dtype == dtype
        assert torch.equal(*torch.broadcast_tensors(got, want)), (start, length, static)
    if stack.causal:  # rows picked by a cache_position tensor: a static read, any positions
        position = torch.tensor([2, 3, 7])
        got, is_causal = plan.self_attention(position, 3)
        want = torch.cat([from_scratch(stack, mask, int(p), 1, N, dtype) for p in position], dim=-2)
        assert not is_causal and torch.equal(*torch.broadcast_tensors(got, want))


@torch.no_grad()
def test_unpadded_steps_keep_their_fast_paths_and_padded_steps_only_slice():
    gpt2 = tiny("gpt2").decoder
    plan = gpt2.plan(3, N, torch.float32, "cpu")
    assert plan.self_attention(0, N) == (None, True)  # SDPA's own causal kernel for the prompt
    assert plan.self_attention(5, 1) == (None, False)  # one token sees every key of a prefix read
    assert tiny("bert").encoder.plan(3, N, torch.float32, "cpu").self_attention(0, N) == (None, False)
    padded = gpt2.plan(3, N, torch.float32, "cpu", attention_mask=left_padded())
    mask, _ = padded.self_attention(5, 1)
    assert mask.untyped_storage().data_ptr() == padded.key_bias.untyped_storage().data_ptr()  # a view
    t5 = tiny("t5").decoder
    t5_plan = t5.plan(3, N, torch.float32, "cpu")
    mask, _ = t5_plan.self_attention(5, 1)
    assert mask.untyped_storage().data_ptr() == t5_plan.by_offset().untyped_storage().data_ptr()


@torch.no_grad()
def test_cross_attention_padding_is_prepared_once():
    decoder = tiny("t5").decoder
    context = left_padded(3, 7).flip(-1)  # right-padded encoder input
    plan = decoder.plan(3, N, torch.float32, "cpu", context_mask=context)
    want = torch.where(context[:, None, None, :].bool(), 0.0, torch.finfo(torch.float32).min)
    assert torch.equal(plan.cross, want) and torch.equal(plan.cross, padding_bias(context, torch.float32))
    assert decoder.plan(3, N, torch.float32, "cpu", context_mask=torch.ones(3, 7, dtype=torch.long)).cross is None


def test_cache_writes_at_an_int_or_a_position_tensor_alike():
    torch.manual_seed(0)
    k, v = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)  # (B, heads, T, head_dim)
    by_int, by_tensor = (KVCache(1, 2, 3, 5, 9, torch.float32) for _ in range(2))
    read_int = by_int.update(0, k, v, 2)
    read_tensor = by_tensor.update(0, k, v, torch.arange(2, 6))
    assert torch.equal(by_int.k, by_tensor.k) and torch.equal(by_int.v, by_tensor.v)
    assert read_int[0].shape[2] == 6 and torch.equal(by_int.k[0, :, :, 2:6], k)
    assert read_tensor[0].shape[2] == 4  # a prefix read after a tensor write counts from `length`
    static = KVCache(1, 2, 3, 5, 9, torch.float32, static=True)
    assert static.update(0, k, v, 0)[0].shape[2] == 9  # a static read: every slot
    with pytest.raises(RuntimeError, match="KV cache full"):
        by_int.update(0, k, v, 7)


def test_cache_is_sized_by_the_attention_modules():
    class Stub:
        def __init__(self, shape):
            self.cache_shape = shape

    cache = KVCache.for_layers([Stub((2, 7)), Stub((2, 7))], batch=3, max_length=5, dtype=torch.float32)
    assert cache.k.shape == (2, 3, 2, 5, 7)
    with pytest.raises(ValueError, match="one shape"):
        KVCache.for_layers([Stub((2, 7)), Stub((4, 7))], batch=3, max_length=5, dtype=torch.float32)
    model = tiny("bart")
    runner = Runner(model, torch.randint(3, 50, (2, 5)), torch.ones(2, 5, dtype=torch.long), False, 6, True)
    attn = model.decoder.layers[0].attn
    assert runner.cache.k.shape == (len(model.decoder.layers), 2, attn.num_heads, 6, attn.head_dim)


def _step_logits(model, ids, mask, steps, static):
    padded = not bool(mask.all())
    runner = Runner(model, ids, mask, padded, ids.shape[1] + steps, True, static=static)
    tokens = ids if model.family == "decoder" else torch.zeros(ids.shape[0], 1, dtype=torch.long)
    out = []
    for _ in range(steps):
        logits = runner.logits(tokens, tokens.shape[1])
        out.append(logits)
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return torch.stack(out), tokens


@pytest.mark.parametrize("kind", ["gpt2", "bloom", "t5", "bart"])
@torch.no_grad()
def test_static_and_dynamic_cache_reads_give_the_same_logits_and_tokens(kind):
    model = tiny(kind)
    ids = torch.randint(3, 50, (3, 6))
    mask = left_padded(3, 6) if model.family == "decoder" else left_padded(3, 6).flip(-1)
    dynamic, dynamic_tokens = _step_logits(model, ids, mask, 7, static=False)
    static, static_tokens = _step_logits(model, ids, mask, 7, static=True)
    torch.testing.assert_close(static, dynamic, atol=1e-5, rtol=0)
    assert torch.equal(static_tokens, dynamic_tokens)
    for kwargs in (dict(), dict(num_beams=3, num_return_sequences=2), dict(do_sample=True, seed=0)):
        args = dict(attention_mask=mask, max_new_tokens=7, min_new_tokens=7, pad_token_id=0, **kwargs)
        assert torch.equal(model.generate(ids, cache_implementation="static", **args), model.generate(ids, **args))


def test_unknown_cache_implementation_is_refused():
    with pytest.raises(InputError, match="cache_implementation"):
        tiny("gpt2").generate(torch.ones(1, 3, dtype=torch.long), cache_implementation="offloaded")


class HostSyncs(TorchDispatchMode):
    """Counts the ops that copy a device value to the host (`item`, `bool(tensor)`, `torch.equal`)."""

    OPS = ("aten::_local_scalar_dense", "aten::equal", "aten::is_nonzero")

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.OPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def syncs(model, ids, mask, new, **kwargs) -> int:
    """Host synchronisations of one generate: the dispatcher's scalar reads plus `Tensor.tolist` (which reads a
    tensor's memory directly, not through an op)."""
    tolist, lists = torch.Tensor.tolist, []

    def counted(self):
        lists.append(1)
        return tolist(self)

    torch.Tensor.tolist = counted
    try:
        with torch.no_grad(), HostSyncs() as counter:
            model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, **kwargs)
    finally:
        torch.Tensor.tolist = tolist
    return counter.count + len(lists)


@pytest.mark.parametrize("kind, kwargs", [("gpt2", {}), ("bloom", {}), ("t5", {}), ("bart", {}),
                                          ("gpt2", dict(num_beams=2)), ("t5", dict(num_beams=2))])
def test_a_padded_generate_synchronises_once_per_step(kind, kwargs):
    model = tiny(kind)
    ids = torch.randint(3, 50, (3, 6))
    mask = left_padded(3, 6) if model.family == "decoder" else left_padded(3, 6).flip(-1)
    kwargs = dict(eos_token_id=2, pad_token_id=0, **kwargs)  # an EOS, so that every step checks for the stop
    short, long = syncs(model, ids, mask, 3, **kwargs), syncs(model, ids, mask, 8, **kwargs)
    assert (long - short) == 5, f"{(long - short) / 5:.1f} host synchronisations per decode step, want 1"
