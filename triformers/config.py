"""ModelConfig: the sizes and variant flags of a transformer, named for what the layers do.

A config says *how* the layers behave (norm placement, position scheme, gated MLP, ...), never *which*
model it is; a dialect (see `triformers/dialects/`) translates a checkpoint's config.json into these
flags and back. Keys of the original config.json that triformers does not use are kept in `extra`,
so that saving writes them back unchanged.

`config.n_layer`, `config.d_model`, `config.use_cache`, ...: the checkpoint's own key names (and transformers'
aliases of them) read as attributes, derived from the dialect's key table and `extra`; they are read-only, so that
one fact lives in one field (setting one says which field to set).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

NORMS = ("layernorm", "rms")
PLACEMENTS = ("pre", "post")
POSITIONS = ("learned", "relative", "alibi", "rotary", "none")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
# Upper bounds far above any published checkpoint: a config.json asking for more is refused before
# anything is allocated (a 10**12 vocabulary would otherwise be an out-of-memory crash, not an error).
LIMITS = {"vocab_size": 2**24, "hidden_size": 2**17, "num_layers": 2**12, "num_heads": 2**12,
          "intermediate_size": 2**20, "head_dim": 2**14, "num_decoder_layers": 2**12, "max_positions": 2**24,
          "type_vocab_size": 2**20, "position_offset": 2**20, "num_labels": 2**24, "num_decoder_heads": 2**12,
          "decoder_intermediate_size": 2**20, "num_kv_heads": 2**12, "sliding_window": 2**24, "embedding_size": 2**17}
OPTIONAL_SIZES = ("head_dim", "num_decoder_layers", "num_decoder_heads", "decoder_intermediate_size", "num_kv_heads",
                  "sliding_window", "embedding_size")
# transformers 5.24's rope types (`modeling_rope_utils.ROPE_INIT_FUNCTIONS` plus "default") and the parameters each
# needs besides rope_theta (Su et al. 2021 "RoFormer"; Peng et al. 2023 "YaRN"; Ding et al. 2024 "LongRoPE")
ROPE_PARAMETERS = {"default": (), "linear": ("factor",), "dynamic": ("factor",),
                   "yarn": ("factor", "original_max_position_embeddings"),
                   "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
                   "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
                   "proportional": ()}
OPTIONAL_FLOATS = ("attention_scale", "attention_softcap", "final_logit_softcap", "local_rope_theta")


@dataclass
class ModelConfig:
    """Sizes and variant flags of one transformer (any family)."""

    model_type: str  # the dialect that reads and writes this config (bert, gpt2, t5, ...)
    vocab_size: int
    hidden_size: int
    num_layers: int  # encoder layers (or decoder layers of a decoder-only model)
    num_heads: int
    intermediate_size: int
    head_dim: int | None = None  # None: hidden_size // num_heads (T5 allows others)
    num_kv_heads: int | None = None  # key/value heads, shared by num_heads / num_kv_heads queries each (GQA; 1: MQA)
    num_decoder_layers: int | None = None  # encoder-decoder only; None: num_layers
    num_decoder_heads: int | None = None  # encoder-decoder only: the decoder stack's heads; None: num_heads
    decoder_intermediate_size: int | None = None  # encoder-decoder only: the decoder's MLP width; None: the encoder's
    max_positions: int = 0  # learned position table size; 0 for models without one
    position_offset: int = 0  # learned positions start here (BART: 2); RoBERTa counts from pad+1
    positions_from_padding: bool = False  # RoBERTa: positions count non-pad tokens, starting at pad+1
    type_vocab_size: int = 0  # BERT token types; 0 = none
    norm: str = "layernorm"  # layernorm | rms (T5: fp32 variance, no mean, no bias)
    norm_eps: float = 1e-5
    norm_placement: str = "post"  # post (BERT, BART) | pre (GPT-2, BLOOM, T5)
    final_norm: bool = False  # a norm after the last block (pre-norm models)
    embedding_norm: bool = False  # LayerNorm right after the embeddings (BERT, BLOOM, BART)
    embedding_scale: float = 1.0  # token embeddings multiplied by this (BART scale_embedding: sqrt(d))
    embedding_scale_rounded: bool = False  # the scale first rounded to the embeddings' dtype (Gemma's embed_scale)
    embedding_size: int | None = None  # token embedding width, projected in to hidden_size and back out (OPT)
    positions: str = "learned"  # learned | relative (T5 buckets) | alibi (BLOOM) | rotary (Llama, NeoX) | none
    positions_from_mask: bool = False  # OPT: learned positions count the tokens attention_mask keeps (pads: -1)
    rope_theta: float = 10000.0  # rotary base wavelength
    rope_scaling: dict[str, Any] | None = None  # {"rope_type": ..., its parameters} (ROPE_PARAMETERS); None: default
    rotary_fraction: float = 1.0  # the share of head_dim that is rotated (NeoX rotary_pct, partial_rotary_factor)
    local_rope_theta: float | None = None  # sliding-window layers' own base, unscaled (Gemma 3); None: as the others
    relative_buckets: int = 32
    relative_max_distance: int = 128
    activation: str = "gelu"  # gelu (erf) | gelu_tanh | relu | silu
    mlm_activation: str | None = None  # the MLM head's; None: `activation` (RoBERTa's head is erf GELU whatever)
    gated_mlp: bool = False  # T5 v1.1: act(x W_gate) * (x W_up)
    scale_attention: bool = True  # multiply q.k by 1/sqrt(head_dim); T5 does not
    attention_scale: float | None = None  # q.k multiplied by this instead (Gemma 2: query_pre_attn_scalar**-0.5)
    attention_softcap: float | None = None  # scores -> c * tanh(scores / c) before the mask (Gemma 2)
    final_logit_softcap: float | None = None  # LM logits -> c * tanh(logits / c) (Gemma 2)
    sliding_window: int | None = None  # such layers see keys k > q - sliding_window only (Mistral, Gemma 2/3)
    sliding_window_layers: tuple[int, ...] | None = None  # the layers with the window; None: all of them
    qk_norm: bool = False  # `norm` over head_dim on q and k, before rotary positions (Qwen3, Gemma 3)
    bias: bool = True  # linear layers (and LayerNorms) have biases
    qkv_bias: bool | None = None  # the q, k, v projections' biases; None: `bias` (Qwen2: q/k/v only)
    out_bias: bool | None = None  # the attention output projection's; None: `bias`
    mlp_bias: bool | None = None  # the MLP projections'; None: `bias`
    norm_unit_offset: bool = False  # RMS norm scales by (1 + weight), computed in fp32 (Gemma)
    sandwich_norm: bool = False  # a norm after attention and after the MLP too, before each residual add (Gemma 2/3)
    parallel_residual: bool = False  # x + attn(norm1(x)) + mlp(norm2(x)) (GPT-NeoX), not one after the other
    tie_word_embeddings: bool = True  # the LM head reuses the token embedding matrix
    output_scale: float = 1.0  # hidden states scaled before a tied LM head (T5 v1.0: d_model**-0.5)
    final_logits_bias: bool = False  # BART: a bias vector added to the LM logits
    mlp_down_fp32: bool = False  # T5: keep the MLP output projection in fp32 under half precision
    pooler: bool = False  # BERT pooler (dense + tanh on the first token)
    classifier: str = "linear"  # linear | pooled | dense_tanh: how sequence classification reads out
    classifier_token: str = "first"  # first | last (last non-pad) | eos (last EOS): the token classified
    dropout: float = 0.1  # on each residual branch (and the embeddings unless embedding_dropout says otherwise)
    embedding_dropout: float | None = None  # after the embeddings; None: `dropout` (GPT-2: embd_pdrop; BLOOM: 0)
    final_norm_dropout: bool = False  # `dropout` after the final norm too (T5; GPT-2 and BLOOM have none)
    activation_dropout: float = 0.0  # inside the MLP, after the activation (T5: dropout_rate; BART: its own)
    attention_dropout: float = 0.1
    classifier_dropout: float | None = None
    initializer_range: float = 0.02  # std of the random init (T5: initializer_factor)
    init_scheme: str = "normal"  # normal: N(0, initializer_range); fan_in: T5's std = factor / sqrt(fan_in)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    num_labels: int = 2
    id2label: dict[int, str] = field(default_factory=dict)
    problem_type: str | None = None  # regression | single_label_classification | multi_label_classification
    extra: dict[str, Any] = field(default_factory=dict)  # config.json keys triformers does not use
    # the dialect's own keys as config.json spelled them: saving keeps a spelling (`gelu_pytorch_tanh`, an explicit
    # `n_inner`) while it still means what the config says; not part of equality
    source: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def inner_dim(self) -> int:
        """Width of the concatenated attention heads."""
        return self.num_heads * self.attention_head_dim

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def key_value_heads(self) -> int:
        """Heads of the keys and values (fewer than num_heads under grouped-query attention)."""
        return self.num_kv_heads if self.num_kv_heads is not None else self.num_heads

    @property
    def embedding_width(self) -> int:
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    def sliding_layer(self, layer: int) -> bool:
        """Whether `layer` attends within `sliding_window` only."""
        return self.sliding_window is not None and (self.sliding_window_layers is None
                                                    or layer in self.sliding_window_layers)

    def layer_bias(self, which: str) -> bool:
        """Whether the `qkv`, `out` (attention output) or `mlp` projections have biases."""
        own = getattr(self, f"{which}_bias")
        return self.bias if own is None else own

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers if self.num_decoder_layers is not None else self.num_layers

    @property
    def decoder_heads(self) -> int:
        """Heads of the decoder stack of an encoder-decoder (a decoder-only model has `num_heads`)."""
        return self.num_decoder_heads if self.num_decoder_heads is not None else self.num_heads

    @property
    def decoder_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.decoder_heads

    def decoder_stack(self) -> ModelConfig:
        """The config the decoder stack of an encoder-decoder is built from: its own heads and MLP width
        (BART's `decoder_attention_heads`, `decoder_ffn_dim`), everything else shared with the encoder."""
        if self.num_decoder_heads is None and self.decoder_intermediate_size is None:
            return self
        width = self.decoder_intermediate_size or self.intermediate_size
        return self.replace(num_heads=self.decoder_heads, intermediate_size=width, num_decoder_heads=None,
                            decoder_intermediate_size=None)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.labels().items()}

    def labels(self) -> dict[int, str]:
        return self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}

    def validate(self) -> None:
        """Raise ConfigError naming the first field whose value cannot make a model."""
        where = f"config ({self.model_type})"
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{where}: {name} must be a positive integer, got {value!r}")
        for name in OPTIONAL_SIZES:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{where}: {name} must be a positive integer or None, got {value!r}")
        for name in ("max_positions", "type_vocab_size", "position_offset"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}: {name} must be a non-negative integer, got {value!r}")
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, int) and value > limit:
                raise ConfigError(f"{where}: {name} = {value} is beyond any real model (at most {limit}); refused")
        for name in ("num_heads", "num_decoder_heads"):
            heads = getattr(self, name)
            if self.head_dim is None and heads is not None and self.hidden_size % heads:
                raise ConfigError(f"{where}: hidden_size {self.hidden_size} is not divisible by {name} {heads}")
        checks = (("norm", NORMS), ("norm_placement", PLACEMENTS), ("positions", POSITIONS),
                  ("activation", ACTIVATIONS))
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{where}: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.mlm_activation not in (None, *ACTIVATIONS):
            raise ConfigError(f"{where}: mlm_activation must be None or one of {ACTIVATIONS}, "
                              f"got {self.mlm_activation!r}")
        if self.positions == "learned" and self.max_positions <= 0:
            raise ConfigError(f"{where}: learned positions need max_positions > 0")
        for name in ("dropout", "attention_dropout", "activation_dropout", "embedding_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if name in ("embedding_dropout", "classifier_dropout") and value is None:
                continue
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"{where}: {name} must be in [0, 1), got {value!r}")
        if not isinstance(self.num_labels, int) or self.num_labels <= 0:
            raise ConfigError(f"{where}: num_labels must be a positive integer, got {self.num_labels!r}")
        if self.id2label and sorted(self.id2label) != list(range(self.num_labels)):
            # every classifier output needs its name, and every name an output (a pipeline reads id2label[i])
            extra = sorted(set(self.id2label) - set(range(self.num_labels)))
            missing = sorted(set(range(self.num_labels)) - set(self.id2label))
            raise ConfigError(f"{where}: id2label must name the labels 0..{self.num_labels - 1} (num_labels = "
                              f"{self.num_labels}), one per classifier output; "
                              + (f"key(s) {extra} are outside" if extra else f"label(s) {missing} have no name"))
        if not isinstance(self.initializer_range, (int, float)) or not 0 <= self.initializer_range < float("inf"):
            raise ConfigError(f"{where}: initializer_range must be a finite number >= 0, "
                              f"got {self.initializer_range!r}")
        if not isinstance(self.norm_eps, (int, float)) or not self.norm_eps > 0:
            raise ConfigError(f"{where}: norm_eps must be a positive number, got {self.norm_eps!r}")
        self._validate_attention(where)
        self._validate_rotary(where)

    def _validate_attention(self, where: str) -> None:
        """The grouped-query, window, scale and softcap fields."""
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{where}: num_heads {self.num_heads} is not a multiple of num_kv_heads "
                              f"{self.num_kv_heads} (each key/value head serves a whole group of query heads)")
        for name in OPTIONAL_FLOATS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < float("inf")):
                raise ConfigError(f"{where}: {name} must be a positive number or None, got {value!r}")
        if self.attention_scale is not None and not self.scale_attention:
            raise ConfigError(f"{where}: attention_scale is set but scale_attention is False; choose one")
        layers = self.sliding_window_layers
        if layers is not None and (not isinstance(layers, tuple) or any(
                not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.num_layers for i in layers)):
            raise ConfigError(f"{where}: sliding_window_layers must be a tuple of layer indices in "
                              f"0..{self.num_layers - 1}, got {layers!r}")
        if self.sliding_window is not None and self.positions in ("alibi", "relative"):
            raise ConfigError(f"{where}: sliding_window with {self.positions} positions is not implemented "
                              "(the windowed KV cache holds no position bias)")
        for name in ("qkv_bias", "out_bias", "mlp_bias"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(f"{where}: {name} must be True, False or None, got {getattr(self, name)!r}")
        if self.parallel_residual and self.norm_placement != "pre":
            raise ConfigError(f"{where}: parallel_residual needs norm_placement 'pre'")

    def _validate_rotary(self, where: str) -> None:
        """rope_theta, rotary_fraction and the rope_scaling dict (its type and the parameters that type needs)."""
        if not isinstance(self.rope_theta, (int, float)) or isinstance(self.rope_theta, bool) or self.rope_theta <= 0:
            raise ConfigError(f"{where}: rope_theta must be a positive number, got {self.rope_theta!r}")
        fraction = self.rotary_fraction
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
            raise ConfigError(f"{where}: rotary_fraction must be in (0, 1], got {fraction!r}")
        if self.positions == "rotary" and int(self.attention_head_dim * fraction) < 2:
            raise ConfigError(f"{where}: rotary_fraction {fraction} of head_dim {self.attention_head_dim} "
                              "rotates no pair of dimensions")
        scaling = self.rope_scaling
        if scaling is None:
            return
        if not isinstance(scaling, dict) or scaling.get("rope_type") not in ROPE_PARAMETERS:
            got = scaling.get("rope_type") if isinstance(scaling, dict) else scaling
            raise ConfigError(f"{where}: rope_scaling's rope_type must be one of {sorted(ROPE_PARAMETERS)}, "
                              f"got {got!r}")
        kind = scaling["rope_type"]
        missing = [name for name in ROPE_PARAMETERS[kind] if scaling.get(name) is None
                   and not (kind == "yarn" and name == "factor")]  # YaRN derives a missing factor
        if missing:
            raise ConfigError(f"{where}: rope_scaling of rope_type {kind!r} needs {', '.join(missing)}")
        for name in ("factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor",
                     "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
            value = scaling.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < float("inf")):
                raise ConfigError(f"{where}: rope_scaling {name} must be a finite number >= 0, got {value!r}")
        if self.max_positions <= 0 and (kind == "dynamic" or (kind in ("yarn", "longrope")
                                                               and scaling.get("factor") is None)):
            raise ConfigError(f"{where}: rope_type {kind!r} scales by max_positions, which is not set")
        if kind == "longrope":
            pairs = int(self.attention_head_dim * fraction) // 2
            for name in ("short_factor", "long_factor"):
                value = scaling[name]
                if not isinstance(value, list) or len(value) != pairs or not all(
                        isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in value):
                    raise ConfigError(f"{where}: rope_scaling {name} must be {pairs} positive numbers (one per "
                                      f"rotated pair of dimensions), got {value!r}")

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- the checkpoint's own names, read-only ----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """Called only for names that are not fields: config.json keys of the dialect (`n_layer`, `d_model`),
        transformers' aliases of them (`num_hidden_layers`), keys kept in `extra`, and `is_encoder_decoder`."""
        if name.startswith("_") or "source" not in self.__dict__:  # copy / pickle probing, or mid-construction
            raise AttributeError(name)
        from .dialects import checkpoint_attribute  # lazy: dialects sit above config in the layering

        return checkpoint_attribute(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in FIELDS or name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        from .dialects import setting_error

        raise AttributeError(setting_error(self, name))


FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))
