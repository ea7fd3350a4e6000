"""What every triformers model shares: loading, saving, initialisation and input checks.

A model is one family class (EncoderModel, DecoderModel, EncoderDecoderModel) with an optional task
`head`; `from_pretrained` reads a Hugging Face checkpoint through its dialect (see triformers/io/).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import InputError
from ..layers.onednn import pack, packable, unpack
from ..layers.storage import row_major
from ..layers.norms import RMSNorm
from ..memory import check_model_memory, parse_dtype
from .inputs import Inputs, check_forward

# config fields a generation_config derived from a config (no config.json read) starts from
SPECIAL_TOKENS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "forced_bos_token_id",
                  "forced_eos_token_id")


class TransformerModel(nn.Module):
    family: ClassVar[str]
    heads: ClassVar[tuple[str | None, ...]]

    def __init__(self, config: ModelConfig, head: str | None = None):
        super().__init__()
        if head not in self.heads:
            raise ValueError(f"{type(self).__name__} has no head {head!r}; choose one of {self.heads}")
        if torch.get_default_device().type != "meta":  # meta: the loader checks, in the dtype it loads in
            check_model_memory(config, self.family, head, torch.get_default_dtype(), device=torch.get_default_device())
        self.config, self.head = config, head
        self.attn_implementation = "sdpa"  # or "eager": attention weights formed explicitly (transformers' names)

    # -- loading and saving -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, head: str | None = None,
                        ignore_mismatched_sizes: bool = False, quantize: str | None = None,
                        gguf_file: str | os.PathLike | None = None, **kwargs: Any) -> TransformerModel:
        """Load a Hugging Face checkpoint (folder, cache, or hub id); the model is returned in eval().

        Takes transformers' loading keywords (`dtype` / `torch_dtype`, "auto" = the checkpoint's; `device_map`;
        `attn_implementation`; `revision`, `cache_dir`, `subfolder`, `local_files_only`, `token`,
        `force_download`; `use_safetensors`; see io/options.py); the other keywords are overrides of the
        checkpoint's config keys. `quantize="int8"` stores linear weights as int8 (weight-only, per-channel
        scales) for faster CPU inference.
        """
        from ..io.options import split
        from ..io.pretrained import load_model, locate

        generation_config = kwargs.pop("generation_config", None)  # replaces the checkpoint's
        hub, options, config_overrides = split(kwargs)
        checkpoint = locate(name_or_path, None, config_overrides, gguf_file, hub_options=hub, strict=True)
        return load_model(cls, checkpoint, head=head, ignore_mismatched_sizes=ignore_mismatched_sizes,
                          quantize=quantize, generation_config=generation_config, options=options)

    @classmethod
    def from_config(cls, config: ModelConfig, *, head: str | None = None, dtype: torch.dtype | None = None):
        """A randomly initialised model (for pre-training or fine-tuning from scratch)."""
        dtype = parse_dtype(dtype, auto=False)
        model = cls(config, head=head)
        model.init_weights()
        return model.to(dtype) if dtype is not None else model

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write config.json + model.safetensors (+ generation_config.json for a model that generates) that both
        triformers and transformers load."""
        from ..io.pretrained import save_pretrained

        save_pretrained(self, folder)

    # -- initialisation ---------------------------------------------------------------------------
    def init_weights(self, modules=None) -> None:
        """Random init: N(0, initializer_range) (BERT, GPT-2, BLOOM, BART), or with `init_scheme="fan_in"`
        T5's Mesh-TensorFlow scheme: std = factor / sqrt(fan_in), q scaled by 1/sqrt(head_dim) more,
        token embeddings and an untied LM head std = factor (as transformers' T5 `_init_weights`)."""
        config = self.config
        fan_in = config.init_scheme == "fan_in"
        std = config.initializer_range
        for module in modules if modules is not None else self.modules():
            if isinstance(module, nn.Linear):
                untied_head = module is getattr(self, "lm_head", None)
                nn.init.normal_(module.weight, std=std * module.in_features ** -0.5 if fan_in and not untied_head
                                else std)
                if fan_in and getattr(module, "is_fused_qkv", False):
                    module.weight.data[: config.inner_dim] *= config.attention_head_dim ** -0.5  # q of fused qkv
                if fan_in and getattr(module, "is_cross_query", False):
                    module.weight.data *= config.attention_head_dim ** -0.5
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                relative = fan_in and module.num_embeddings == config.relative_buckets \
                    and module.embedding_dim == config.num_heads
                nn.init.normal_(module.weight, std=std * config.hidden_size ** -0.5 if relative else std)
                if module.padding_idx is not None:
                    module.weight.data[module.padding_idx].zero_()
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):  # Gemma's (1 + w) norms start at w = 0
                (nn.init.zeros_ if getattr(module, "unit_offset", False) else nn.init.ones_)(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            else:  # parameters owned directly by a head or model (e.g. the MLM output bias)
                for name, param in module.named_parameters(recurse=False):
                    if name.endswith("bias"):
                        nn.init.zeros_(param)

    # -- inference speed ----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> TransformerModel:
        """nn.Module.train; entering training also writes out row-major any weight still held as a transposed
        view of its checkpoint (GPT-2's Conv1D weights), so that optimizers and gradients see ordinary tensors."""
        if mode:
            for weight in self._linear_weights():
                row_major(weight)
        return super().train(mode)

    def pack_weights(self) -> TransformerModel:
        """Keep a copy of every linear weight (and of a tied LM head) in oneDNN's blocked layout, so that
        CPU inference skips a weight reorder in every matmul (it pays most in bf16 and for batched fp32
        decoding; figures in the README). Costs the memory of a second copy of those weights. The parameters
        themselves (training, saving, `state_dict`) are unchanged, and a packed copy is dropped once its
        weight is modified or cast; `unpack_weights()` frees the copies.
        Returns the model."""
        for weight in self._linear_weights():
            if packable(weight):
                pack(weight)
        return self

    def unpack_weights(self) -> TransformerModel:
        for weight in self._linear_weights():
            unpack(weight)
        return self

    def _linear_weights(self) -> list[torch.Tensor]:
        weights = [m.weight for m in self.modules() if isinstance(m, nn.Linear)]
        if self.head == "lm" and getattr(self, "lm_head", None) is None and hasattr(self, "embed_tokens"):
            weights.append(self.embed_tokens.weight)  # tied LM head: logits = hidden @ embeddings^T
        return weights

    # -- conveniences -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted once each (a tied head adds none), as transformers counts them."""
        skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)} if exclude_embeddings else set()
        return sum(p.numel() for p in self.parameters()
                   if (p.requires_grad or not only_trainable) and id(p) not in skip)

    def can_generate(self) -> bool:
        return self.head == "lm" and self.family != "encoder"

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        """Replace the token embeddings (shared by both stacks and a tied head, which follows them)."""
        from .surface import set_input_embeddings

        set_input_embeddings(self, embeddings)

    def get_output_embeddings(self) -> nn.Module | None:
        """The LM head's matrix owner: an untied head's Linear, else (tied) the token embeddings; None without
        a vocabulary head."""
        from .surface import output_embeddings

        return output_embeddings(self)

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Change the vocabulary size (rounded up to `pad_to_multiple_of`): rows kept, new rows the mean of the old
        (or N(0, initializer_range) with `mean_resizing=False`); an untied head and the output biases follow, a
        tied head stays tied. Returns the new embedding."""
        from .surface import resize_token_embeddings

        return resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of, mean_resizing)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Activation checkpointing per block in training: each block's activations are recomputed in backward
        (torch.utils.checkpoint, non-reentrant) instead of kept, trading compute for memory."""
        if gradient_checkpointing_kwargs and gradient_checkpointing_kwargs.get("use_reentrant"):
            raise InputError("gradient checkpointing here is non-reentrant (use_reentrant=False)")
        self._set_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        self._set_checkpointing(False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def _set_checkpointing(self, on: bool) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing") and module is not self:
                module.gradient_checkpointing = on

    def set_attn_implementation(self, name: str) -> None:
        from ..io.options import attention

        self.attn_implementation = attention(name)

    def max_length(self) -> int | None:
        """How many positions a sequence may have (None when the position scheme has no limit)."""
        config = self.config
        if config.positions != "learned":
            return None
        if config.positions_from_padding:
            return config.max_positions - config.pad_token_id - 1
        return config.max_positions

    @property
    def generation_config(self) -> Any:
        """The model's default generation settings (a `GenerationConfig`; None for a model that cannot
        generate): read from the checkpoint's generation_config.json, else derived from its config.json as
        transformers derives them (`GenerationConfig.from_model_config`)."""
        if self.family == "encoder" or self.head != "lm":
            return None
        if self.__dict__.get("_generation_config") is None:
            from ..generation.config import GenerationConfig

            config = self.config
            special = {name: getattr(config, name) for name in SPECIAL_TOKENS}
            source = {**special, **config.extra, **config.source}  # the file's own keys over the dialect's defaults
            self.__dict__["_generation_config"] = GenerationConfig.from_model_config(source)
        return self.__dict__["_generation_config"]

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.__dict__["_generation_config"] = value

    def generate(self, inputs: torch.Tensor | None = None, generation_config: Any = None,
                 logits_processor: list | None = None, stopping_criteria: list | None = None,
                 streamer: Any = None, **kwargs: Any) -> Any:
        """Generate ids, token for token as transformers' `generate` (see triformers/generation/).

        inputs: the prompt (input_ids) as transformers' first argument; `input_ids=`, `attention_mask=`,
        `decoder_input_ids=`, `encoder_outputs=` are taken as keywords too. generation_config: the base
        settings (unset fields from `model.generation_config`); keyword arguments that are GenerationConfig
        fields (max_new_tokens, do_sample, num_beams, temperature, top_k, top_p, ...) win over both.
        cache_implementation: "dynamic" (default) or "static" (fixed-shape steps that read the whole cache).
        logits_processor / stopping_criteria: the caller's own, with transformers' call signatures;
        `tokenizer=` for stop_strings; triformers' `generator=` or `seed=` for reproducible sampling.
        Returns prompt + new ids (decoder-only) or decoder ids from decoder_start_token_id (encoder-decoder),
        or with `return_dict_in_generate=True` transformers' output object.
        """
        from ..generation import generate

        return generate(self, inputs, generation_config, logits_processor, stopping_criteria, streamer, **kwargs)

    def check_inputs(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                     name: str = "input_ids", past: int = 0, position_ids: torch.Tensor | None = None,
                     token_type_ids: torch.Tensor | None = None) -> Inputs:
        """Clear errors for bad ids, masks, positions, token types and lengths, before they become torch index
        errors (see models/inputs.py); returns the inputs as the model uses them (narrow integer ids widened)."""
        return check_forward(self.config, self.max_length(), input_ids, attention_mask, name, past, position_ids,
                             token_type_ids)

    def check_span(self, batch: int, length: int, attention_mask: torch.Tensor | None, name: str,
                   past: int = 0) -> None:
        """Clear errors for an input too long for the positions, or a mask of the wrong shape."""
        if length == 0:
            raise InputError(f"{name} is empty (length 0)")
        limit = self.max_length()
        if limit is not None and past + length > limit:
            raise InputError(f"{name} has {past + length} positions but the model has at most "
                             f"{limit}; truncate the input (e.g. tokenizer(..., truncation=True, max_length={limit}))")
        if attention_mask is not None:
            expected = (batch, past + length)
            if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != expected:
                got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else attention_mask
                raise InputError(f"attention_mask for {name} must have shape {expected}, got {got}")
