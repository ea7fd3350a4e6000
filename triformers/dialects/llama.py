"""Llama checkpoints (SmolLM, SmolLM2, Llama 2 / 3.x: transformers' `LlamaModel`, `LlamaForCausalLM` and the
generic sequence / token classification and QA heads), and the base of every Llama-shaped dialect.

Matches `transformers/models/llama/modeling_llama.py`: a pre-norm causal decoder with RMS norms, SwiGLU
(silu(x W_gate) * x W_up, then W_down; no biases), rotary positions on q and k (rotate-half layout,
any rope type, e.g. Llama 3.1's `llama3`), grouped-query attention (`num_key_value_heads`), a final norm,
and an LM head tied to the embeddings or not. q, k and v are fused on load into one matrix (k and v
with their own, smaller number of heads), gate and up into another.

`LlamaDialect` is also the base of mistral, qwen2, qwen3, gemma, gemma2, gemma3_text and phi3: a subclass
names its model_type, transformers class names, key table and fixed flags, and where its weights differ
(Phi-3's already fused `qkv_proj` / `gate_up_proj`, Gemma 2/3's four norms) its `rules` follow the config.
"""

from __future__ import annotations

from ..config import ModelConfig
from .base import Dialect, Key, Recipe, Rule, fused, split
from .decoder_keys import rope_keys, size_keys
from .keys import common_keys

# the flags every Llama-shaped decoder has (transformers' `...Model` classes); classifiers read the last token
LLAMA_FIXED = dict(positions="rotary", norm="rms", norm_placement="pre", final_norm=True, gated_mlp=True, bias=False,
                   dropout=0.0, embedding_dropout=0.0, classifier="linear", classifier_token="last")


def generic_classifier_dropout() -> Key:
    """`GenericForTokenClassification`'s dropout: config.classifier_dropout, else 0.1."""
    return Key("classifier_dropout", "classifier_dropout", float, 0.1, optional=True)


def qkv_sizes(config: ModelConfig) -> list[int]:
    """Rows of q, k and v in the fused projection (k and v have the kv heads)."""
    hd = config.attention_head_dim
    return [config.num_heads * hd, config.key_value_heads * hd, config.key_value_heads * hd]


class LlamaDialect(Dialect):
    model_type = "llama"
    family = "decoder"
    recipe = Recipe("clm", "bpe")
    base_prefix = "model."
    head_prefixes = {"question_answering": "transformer."}  # LlamaForQuestionAnswering's, kept for compatibility
    architectures = {None: "LlamaModel", "lm": "LlamaForCausalLM",
                     "sequence_classification": "LlamaForSequenceClassification",
                     "token_classification": "LlamaForTokenClassification",
                     "question_answering": "LlamaForQuestionAnswering"}
    # a tied head saved as a copy of the embeddings; rotary frequency buffers of older checkpoints
    ignore = (r"^lm_head\.weight$", r"rotary_emb\.inv_freq$")
    # LlamaConfig (transformers 5.24 configuration_llama.py)
    keys = (
        *size_keys(vocab=32000, hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=None, head_dim=None,
                   act_key="hidden_act", act="silu", max_positions=2048, eps=1e-6),
        Key("attention_bias", ("qkv_bias", "out_bias"), bool, False, load=lambda value, read: (value, value),
            save=lambda c: c.layer_bias("qkv")),
        Key("mlp_bias", "mlp_bias", bool, False),
        Key("attention_dropout", "attention_dropout", float, 0.0),
        Key("tie_word_embeddings", "tie_word_embeddings", bool, False),
        *rope_keys(),
        generic_classifier_dropout(),
        *common_keys(bos=1, eos=2),
    )
    fixed = LLAMA_FIXED
    # transformers' names of the weights that differ between dialects
    fused_qkv: str | None = None  # one checkpoint tensor for q | k | v (Phi-3: "qkv_proj")
    fused_gate_up: str | None = None  # one for gate | up (Phi-3: "gate_up_proj")
    head_names = {"sequence_classification": "score", "token_classification": "score",
                  "question_answering": "qa_outputs"}

    def rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        rules = [Rule("embed_tokens.weight", ("embed_tokens.weight",)),
                 Rule("decoder.final_norm.weight", ("norm.weight",))]
        ours, layer = "decoder.layers.{}.", "layers.{}."
        attn, mlp = layer + "self_attn.", layer + "mlp."
        kinds = ("weight", "bias")
        for kind in kinds[:1 + config.layer_bias("qkv")]:
            if self.fused_qkv:
                rules.append(Rule(f"{ours}attn.qkv.{kind}", (f"{attn}{self.fused_qkv}.{kind}",), layers="decoder"))
            else:
                rules.append(Rule(f"{ours}attn.qkv.{kind}", tuple(f"{attn}{p}_proj.{kind}" for p in "qkv"),
                                  layers="decoder", **split(qkv_sizes)))
        rules += [Rule(f"{ours}attn.out.{kind}", (f"{attn}o_proj.{kind}",), layers="decoder")
                  for kind in kinds[:1 + config.layer_bias("out")]]
        for kind in kinds[:1 + config.layer_bias("mlp")]:
            if self.fused_gate_up:
                rules.append(Rule(f"{ours}mlp.gate_up.{kind}", (f"{mlp}{self.fused_gate_up}.{kind}",),
                                  layers="decoder"))
            else:
                rules.append(Rule(f"{ours}mlp.gate_up.{kind}", (f"{mlp}gate_proj.{kind}", f"{mlp}up_proj.{kind}"),
                                  layers="decoder", **fused(2)))
            rules.append(Rule(f"{ours}mlp.down.{kind}", (f"{mlp}down_proj.{kind}",), layers="decoder"))
        if config.qk_norm:
            rules += [Rule(f"{ours}attn.{p}_norm.weight", (f"{attn}{p}_norm.weight",), layers="decoder") for p in "qk"]
        norms = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"}
        if config.sandwich_norm:  # Gemma 2/3: their post_attention_layernorm normalises the attention output
            norms = {"attn_norm": "input_layernorm", "attn_post_norm": "post_attention_layernorm",
                     "mlp_norm": "pre_feedforward_layernorm", "mlp_post_norm": "post_feedforward_layernorm"}
        rules += [Rule(f"{ours}{mine}.weight", (f"{layer}{theirs}.weight",), layers="decoder")
                  for mine, theirs in norms.items()]
        return rules + self.head_rules(config, head)

    def head_rules(self, config: ModelConfig, head: str | None) -> list[Rule]:
        if head == "lm":
            return [Rule("lm_head.weight", ("lm_head.weight",), head="lm")]
        name = self.head_names.get(head)
        if head == "sequence_classification":
            return [Rule("classifier.out.weight", (f"{name}.weight",), head=head)]
        if head in ("token_classification", "question_answering"):
            return [Rule(f"token_classifier.{kind}", (f"{name}.{kind}",), head=head) for kind in ("weight", "bias")]
        return []
