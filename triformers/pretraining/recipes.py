"""Pre-training recipes: what each dialect's `Recipe` (in its dialect file) turns into.

| dialect | family | tokenizer trained | objective (collator) | example |
|---|---|---|---|---|
| bert | encoder | WordPiece | MLM 15%, 80/10/10 (`MLMCollator`) | `[CLS] block [SEP]` |
| roberta | encoder | byte-level BPE, `<s> <pad> </s> <unk> <mask>` | MLM | `<s> block </s>` |
| gpt2, bloom | decoder | byte-level BPE, `<|endoftext|>` | CLM, packed (`CLMCollator`) | block |
| t5 | encoder-decoder | Unigram + 100 sentinels | span corruption (`SpanCorruptionCollator`) | raw chunk |
| bart | encoder-decoder | byte-level BPE as RoBERTa | text infilling (`TextInfillingCollator`) | `<s> block </s>` |

A registered dialect with a recipe is pre-trainable; nothing here is keyed on a dialect's name. A family
stands for its first dialect (`FAMILY_DIALECTS`); with neither a family nor a dialect, `DEFAULT_FAMILY`.
A recipe may name the default sizes of its dialect (`Recipe.size`, see `sizes.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..config import ModelConfig
from ..dialects import DIALECTS, Recipe, get_dialect
from ..errors import ConfigError
from ..objectives import (CLMCollator, MLMCollator, SpanCorruptionCollator, TextInfillingCollator,
                          compute_input_and_target_lengths)
from ..tokenization import Tokenizer, train_tokenizer
from .sizes import ModelSize, resolve_size

FAMILY_DIALECTS = {"encoder": "bert", "decoder": "gpt2", "encoder-decoder": "t5"}
DEFAULT_FAMILY = "decoder"


@dataclass
class Objective:
    name: str
    block_length: int  # raw stream tokens per example
    separator: int | None  # token put after every document in the stream
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    collator: Callable[[list[Any]], dict]


def recipe_of(dialect: str) -> Recipe:
    recipe = get_dialect(dialect, where=f"--dialect {dialect}").recipe
    if recipe is None:
        raise ConfigError(f"--dialect {dialect!r} has no pre-training recipe (set `recipe = Recipe(...)` on the "
                          "dialect); pre-trainable: " + ", ".join(sorted(n for n, d in DIALECTS.items() if d.recipe)))
    return recipe


def resolve_dialect(family: str | None, dialect: str | None) -> str:
    """The dialect to pre-train: given, or the family's (DEFAULT_FAMILY's when neither is given); checked."""
    if dialect is None:
        if (family or DEFAULT_FAMILY) not in FAMILY_DIALECTS:
            raise ConfigError(f"--family must be one of {sorted(FAMILY_DIALECTS)} (or give --dialect), got {family!r}")
        dialect = FAMILY_DIALECTS[family or DEFAULT_FAMILY]
    if dialect not in DIALECTS:
        raise ConfigError(f"--dialect {dialect!r} is not registered; available: {sorted(DIALECTS)}")
    recipe_of(dialect)
    if family is not None and get_dialect(dialect).family != family:
        raise ConfigError(f"--dialect {dialect} is a {get_dialect(dialect).family} model, not --family {family}")
    return dialect


def train_family_tokenizer(dialect: str, texts, vocab_size: int, model_max_length: int) -> Tokenizer:
    """A new tokenizer of the kind the dialect's recipe names, trained on `texts`."""
    kind = recipe_of(dialect).tokenizer
    if kind == "roberta":
        return _train_roberta_bpe(texts, vocab_size, model_max_length)
    return train_tokenizer(texts, kind=kind, vocab_size=vocab_size, model_max_length=model_max_length)


def _train_roberta_bpe(texts, vocab_size: int, model_max_length: int) -> Tokenizer:
    """RoBERTa / BART byte-level BPE: `<s>=0 <pad>=1 </s>=2 <unk>=3`, `<mask>` last, `<s> A </s>` template."""
    from tokenizers import AddedToken, decoders, pre_tokenizers, trainers
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import BPE

    from ..tokenization import converters
    from ..tokenization.loading import set_post_processor

    backend = Backend(BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    # RoBERTa's <mask> is the last id and strips the space before it (lstrip), as in roberta-base
    backend.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    family = converters.ROBERTA
    tokenizer = Tokenizer(backend, family, special_tokens=dict(family.specials), model_max_length=model_max_length)
    set_post_processor(tokenizer, "roberta", {})
    return tokenizer


def size_of(dialect: str, size: ModelSize) -> ModelSize:
    """`size` with the fields left None taken from the dialect's recipe (else the generic sizes)."""
    return resolve_size(size, recipe_of(dialect).size, where=f"--dialect {dialect}")


def build_config(dialect: str, tokenizer: Tokenizer, size: ModelSize) -> ModelConfig:
    """The dialect's default config resized (None sizes: the recipe's), with the tokenizer's vocabulary and ids."""
    recipe, size = recipe_of(dialect), size_of(dialect, size)
    base = get_dialect(dialect).config_from_hf({}, f"pretrain --dialect {dialect}")
    changes: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, num_layers=size.layers, num_heads=size.heads,
        intermediate_size=size.intermediate_size or 4 * size.hidden_size, head_dim=None)
    if base.num_decoder_layers is not None or get_dialect(dialect).family == "encoder-decoder":
        changes["num_decoder_layers"] = size.layers
    if base.head_dim is not None and get_dialect(dialect).family != "decoder":  # decoders read hidden/heads as None
        changes["head_dim"] = size.hidden_size // size.heads
    if base.embedding_scale == base.hidden_size ** 0.5:  # sqrt(hidden) (Gemma, BART's scale_embedding): the new one
        changes["embedding_scale"] = size.hidden_size ** 0.5
    if base.sliding_window_layers is not None:  # the dialect's pattern (every period-th layer full) over the new depth
        full = [i not in base.sliding_window_layers for i in range(base.num_layers)]
        period = full.index(True) + 1
        sliding = tuple(i for i in range(size.layers) if (i + 1) % period)
        changes["sliding_window_layers"] = None if len(sliding) == size.layers else sliding
    if base.num_kv_heads is not None:  # grouped-query: the dialect's group size, as far as the new heads allow
        kv_heads = max(1, size.heads // (base.num_heads // base.num_kv_heads))
        while size.heads % kv_heads:
            kv_heads -= 1
        changes["num_kv_heads"] = None if kv_heads == size.heads else kv_heads
    if size.dropout is not None:
        changes.update(dropout=size.dropout, attention_dropout=size.dropout,
                       activation_dropout=size.dropout if base.activation_dropout else 0.0)
    if base.output_scale != 1.0:  # T5 v1.0 scales by d_model**-0.5: the new width's, as a reload computes it
        changes["output_scale"] = size.hidden_size ** -0.5
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(tokenizer, key, None) is not None:
            changes[key] = getattr(tokenizer, key)
        elif (getattr(base, key) or 0) >= len(tokenizer):  # a default id (Phi-3's pad 32000) the vocabulary lacks
            changes[key] = None
    changes.update({field: getattr(tokenizer, token) for field, token in recipe.special_ids})
    changes.update(dict(recipe.config))
    config = base.replace(**changes)
    if config.positions == "learned":  # a table long enough for seq_len (RoBERTa counts from pad + 1)
        extra = config.pad_token_id + 1 if config.positions_from_padding else 0
        config = config.replace(max_positions=size.seq_len + extra)
    get_dialect(dialect).config_to_hf(config)  # a size its config.json cannot say is refused now, not after training
    return config


def build_objective(dialect: str, tokenizer: Tokenizer, seq_len: int) -> Objective:
    """The recipe's objective: its collator and how the token stream is cut into examples."""
    objective = recipe_of(dialect).objective
    if objective == "mlm":
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        return Objective(objective, seq_len - 2, sep, (cls,), (sep,), MLMCollator.from_tokenizer(tokenizer))
    if objective == "clm":
        return Objective(objective, seq_len, tokenizer.eos_token_id, (), (), CLMCollator.from_tokenizer(tokenizer))
    if objective == "span_corruption":
        tokens_length, _ = compute_input_and_target_lengths(seq_len)
        collator = SpanCorruptionCollator.from_tokenizer(tokenizer, input_length=seq_len)
        return Objective(objective, tokens_length, tokenizer.eos_token_id, (), (), collator)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return Objective(objective, seq_len - 2, eos, (bos,), (eos,), TextInfillingCollator.from_tokenizer(tokenizer))
