"""Model specs at real sizes, random checkpoints that both libraries load, and the floors they imply.

A checkpoint is built once per case: transformers model from its config (random weights) ->
`save_pretrained` to a temporary folder -> both libraries load that folder, so they hold the SAME
weights. flan-T5 is made untied as real flan-T5 checkpoints are (see DESIGN.md: transformers 5.24
ties every T5 built from a config, so the head gets its own weights and config.json is rewritten).
"""

from __future__ import annotations

import inspect
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch

from ..harness import Skip

# name -> (transformers config class, its keyword arguments, family)
SPECS: dict[str, tuple[str, dict[str, Any], str]] = {
    "gpt2-124m": ("GPT2Config", {}, "decoder"),  # GPT-2 small: 12 x 768, 50257 vocab
    "bloom-560m": ("BloomConfig", dict(vocab_size=250880, hidden_size=1024, n_layer=24, n_head=16), "decoder"),
    "tiny-gpt2": ("GPT2Config", dict(n_layer=4, n_embd=256, n_head=4, vocab_size=8192, n_positions=512,
                                         bos_token_id=8191, eos_token_id=8191), "decoder"),
    "flan-t5-small": ("T5Config", dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                                       num_decoder_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                                       tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                                       eos_token_id=1), "encoder-decoder"),
    "bart-base": ("BartConfig", dict(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6,
                                     encoder_attention_heads=12, decoder_attention_heads=12,
                                     encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024),
                  "encoder-decoder"),
    "tiny-t5": ("T5Config", dict(vocab_size=8192, d_model=256, d_kv=64, d_ff=1024, num_layers=2,
                                 num_decoder_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                                 tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                                 eos_token_id=1), "encoder-decoder"),
    "tiny-bart": ("BartConfig", dict(vocab_size=8192, d_model=256, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=1024,
                                     decoder_ffn_dim=1024, max_position_embeddings=512), "encoder-decoder"),
    "bert-base": ("BertConfig", {}, "encoder"),  # BERT-base: 12 x 768, 30522 vocab
    # today's decoders (issue 15), shapes from their config.json files
    "smollm2-135m": ("LlamaConfig", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                         max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2), "decoder"),
    "qwen2.5-0.5b": ("Qwen2Config", dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                                         max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                         tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643),
                     "decoder"),  # Qwen2 puts a bias on q/k/v (not o_proj) by itself
}

HF_CLASSES = {"decoder": "AutoModelForCausalLM", "encoder-decoder": "AutoModelForSeq2SeqLM",
              "encoder": "AutoModelForMaskedLM"}


def log(message: str) -> None:
    """Progress goes to stderr; the parent shows it with --verbose and keeps its tail on failure."""
    import sys
    print(message, file=sys.stderr, flush=True)


def hf_config(name: str):
    import transformers
    cls_name, kwargs, _ = SPECS[name]
    return getattr(transformers, cls_name)(**kwargs)


def family(name: str) -> str:
    return SPECS[name][2]


def build_checkpoint(name: str, folder: Path, seed: int = 0) -> Path:
    """Random transformers model of spec `name`, saved as safetensors in `folder`."""
    import transformers
    torch.manual_seed(seed)
    config = hf_config(name)
    model = getattr(transformers, HF_CLASSES[family(name)]).from_config(config)
    untie = config.model_type == "t5" and SPECS[name][1].get("tie_word_embeddings") is False
    if untie:  # real flan-T5 layout: own lm_head weights, unscaled output
        model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight) * 0.05)
    model.save_pretrained(folder)
    if untie:
        path = folder / "config.json"
        data = json.loads(path.read_text())
        data["tie_word_embeddings"] = False
        data.pop("scale_decoder_outputs", None)
        path.write_text(json.dumps(data, indent=2))
    return folder


def load_transformers(name: str, folder: Path, dtype: torch.dtype = torch.float32):
    import transformers
    transformers.utils.logging.disable_progress_bar()
    return getattr(transformers, HF_CLASSES[family(name)]).from_pretrained(folder, dtype=dtype).eval()


def load_triformers(name: str, folder: Path, dtype: torch.dtype = torch.float32, **kwargs: Any):
    """Load with triformers' Auto class, or Skip with the reason (dialect not written yet, ...)."""
    import triformers
    from triformers.dialects import DIALECTS
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    if model_type not in DIALECTS:
        raise Skip(f"triformers has no {model_type!r} dialect yet")
    auto = getattr(triformers, HF_CLASSES[family(name)])
    return auto.from_pretrained(folder, dtype=dtype, **kwargs).eval()


def require_generate(model) -> None:
    if not callable(getattr(model, "generate", None)):
        raise Skip(f"triformers {type(model).__name__}.generate is not available yet")


def supports_keyword(function: Callable, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


@contextmanager
def temporary_folder():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="triformers-bench-") as tmp:
        yield Path(tmp)


# -- what one step must move or compute -----------------------------------------------------------
def decode_weight_count(hf_model) -> int:
    """Parameters read by one decode step: the decoder stack and the output layer.

    Left out: the encoder (runs once per call), position tables and an untied input embedding (one row
    is looked up per token). A tied embedding is counted once, as the output layer.
    """
    out_weight = hf_model.get_output_embeddings().weight
    in_weight = hf_model.get_input_embeddings().weight
    body = hf_model.get_decoder() if hf_model.config.is_encoder_decoder else hf_model
    counted = {}
    for pname, p in body.named_parameters():
        if "position" not in pname and "wpe" not in pname:
            counted[id(p)] = p.numel()
    counted[id(out_weight)] = out_weight.numel()
    if in_weight is not out_weight:
        counted.pop(id(in_weight), None)
    return sum(counted.values())


def kv_dims(hf_config_obj) -> tuple[int, int]:
    """(decoder layers, width of cached keys = kv heads * head_dim) from a transformers config."""
    c = hf_config_obj
    if c.model_type == "t5":
        return c.num_decoder_layers, c.num_heads * c.d_kv
    if c.model_type == "bart":
        return c.decoder_layers, c.d_model
    kv_heads = getattr(c, "num_key_value_heads", None)
    if kv_heads:  # grouped-query attention caches only the kv heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return c.num_hidden_layers, kv_heads * head_dim
    return c.num_hidden_layers, c.hidden_size


def decode_step_bytes(hf_model, batch: int, past_positions: float, cross_positions: int, elem_bytes: int) -> float:
    """Bytes one decode step reads: weights + self-attention KV cache (+ cross-attention KV cache)."""
    layers, width = kv_dims(hf_model.config)
    kv = 2 * layers * batch * (past_positions + cross_positions) * width
    return (decode_weight_count(hf_model) + kv) * elem_bytes


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matmuls in `fn` (forward, or forward + backward), attention included.

    SDPA's fused CPU kernel has no FLOP formula in torch, so the count runs with the math backend,
    whose matmuls are counted.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops()


def random_ids(batch: int, length: int, vocab_size: int, seed: int = 1, low: int = 5) -> torch.Tensor:
    """Token ids away from the special ids at the start of every vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, vocab_size, (batch, length), generator=generator)

