"""Demo sections 2-5: pre-train a tiny model of each family offline, load it back, show it at work.

On the default corpus (Python stdlib docstrings, `triformers.pretraining.corpus.default_corpus`), with
`triformers.pretraining.pretrain`: BERT-style MLM (encoder), GPT-2-style CLM (decoder) and T5-style span
corruption (encoder-decoder). Each checkpoint is then loaded back through the Auto classes and put to
work: `[MASK]` filling, prompt continuation (greedy and sampled), sentinel-span filling on the T5
paper's example "Thank you <extra_id_0> me to your party <extra_id_1> week."

Held-out loss vs the unigram baseline, both over exactly the same tokens:
- the held-out split is `pretrain`'s own (`split_documents`, 2% of documents), packed into blocks as
  in training; its blocks pass once through the family's collator with a fixed seed, so the masks
  (MLM) and noise spans (T5) are fixed;
- the *predicted tokens* of a batch are the ones the objective scores: MLM the masked positions
  (labels != -100), CLM every next token (labels[:, 1:]), span corruption every target token
  (sentinels, span tokens and the closing `</s>`);
- held-out loss: the reloaded model's mean cross-entropy (nats) over those tokens;
- unigram baseline: the cross-entropy over the same tokens of p(t) = (count(t) + 1) / (N + V), where
  count(t) is how often t is a predicted token when the *training* split passes once through the same
  collator (N predicted tokens in all, V = the tokenizer's vocabulary): the best context-free guess
  at what the objective asks for (for T5 it knows how often sentinels and `</s>` are targets).
Every family's run writes `OUT/<family>/` (a Hugging Face folder), and the demo `OUT/summary.json`
and `OUT/loss_curves.png` (training loss, held-out loss and the baseline, one panel per family).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from triformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer
from triformers.pretraining import ModelSize, PretrainOptions, pretrain, prepare, pretraining_arguments

FAMILIES = ("encoder", "decoder", "encoder-decoder")
AUTO = {"encoder": AutoModelForMaskedLM, "decoder": AutoModelForCausalLM, "encoder-decoder": AutoModelForSeq2SeqLM}
SEED_EXAMPLE = "Thank you <extra_id_0> me to your party <extra_id_1> week."


@dataclass(frozen=True)
class Recipe:
    """One family's tiny pre-training run; sized so the three fit the demo's ~5 minutes on 2 cores."""

    steps: int
    lr: float
    seq_len: int
    batch_size: int = 16
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    vocab_size: int = 4000
    max_docs: int | None = None  # None: the whole default corpus

    def options(self, family: str, out: Path) -> PretrainOptions:
        return PretrainOptions(
            family=family, vocab_size=self.vocab_size, max_docs=self.max_docs,
            size=ModelSize(hidden_size=self.hidden_size, layers=self.layers, heads=self.heads,
                           seq_len=self.seq_len, dropout=0.0),  # no dropout: a few hundred steps cannot overfit
            # the pretrain command's training defaults (cosine to 10% of the rate, ...) with the demo's own run;
            # seed 0 is the seed the README's figures were measured with
            training=replace(pretraining_arguments(), output_dir=str(out / family), max_steps=self.steps,
                             per_device_train_batch_size=self.batch_size, per_device_eval_batch_size=self.batch_size,
                             learning_rate=self.lr, warmup_steps=max(1, self.steps // 10),
                             eval_steps=max(1, self.steps // 8), max_eval_batches=4, save_strategy="no", seed=0,
                             overwrite_output_dir=True, plot_loss=False))


RECIPES = {
    "encoder": Recipe(steps=500, lr=2e-3, seq_len=128),  # MLM: 15% of tokens teach, so it gets the most steps
    "decoder": Recipe(steps=300, lr=2e-3, seq_len=128),
    "encoder-decoder": Recipe(steps=400, lr=3e-3, seq_len=128),  # T5's fan-in init learns slower at 1e-3
}
# --quick: seconds, for the test (a 300-document corpus, one tiny layer)
QUICK = dict(steps=6, hidden_size=32, layers=1, heads=2, seq_len=32, batch_size=4, vocab_size=600, max_docs=300)


def recipes(args: argparse.Namespace) -> dict[str, Recipe]:
    chosen = {family: replace(recipe, **QUICK) if args.quick else recipe for family, recipe in RECIPES.items()}
    if args.steps is not None:
        chosen = {family: replace(recipe, steps=args.steps) for family, recipe in chosen.items()}
    return chosen


# ---- held-out loss and the unigram baseline ----------------------------------------------------------
def predicted_tokens(batch: dict[str, torch.Tensor], objective: str) -> torch.Tensor:
    """(n,) the token ids the objective scores in `batch` (see the module docstring)."""
    labels = batch["labels"][:, 1:] if objective == "clm" else batch["labels"]  # CLM: the model shifts inside
    return labels[labels != -100]


def collated(blocks, collator, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Every block once, in order, through `collator` with a generator seeded by `seed`."""
    if hasattr(collator, "generator"):
        collator.generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(blocks), batch_size):
        yield collator([blocks[i] for i in range(start, min(start + batch_size, len(blocks)))])


def unigram_counts(blocks, collator, objective: str, vocab_size: int) -> torch.Tensor:
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for batch in collated(blocks, collator, 256, seed=1):
        counts += torch.bincount(predicted_tokens(batch, objective), minlength=vocab_size)
    return counts


@torch.no_grad()
def held_out_losses(model, batches: list[dict], objective: str, counts: torch.Tensor) -> tuple[float, float, int]:
    """(model cross-entropy, add-one unigram cross-entropy, tokens) over the predicted held-out tokens."""
    log_p = ((counts + 1) / (counts.sum() + len(counts))).log()  # (V,) add-one smoothing
    model_sum = unigram_sum = 0.0
    tokens = 0
    for batch in batches:
        targets = predicted_tokens(batch, objective)
        model_sum += float(model(**batch).loss) * len(targets)  # the model's loss is the mean over them
        unigram_sum -= float(log_p[targets].sum())
        tokens += len(targets)
    return model_sum / tokens, unigram_sum / tokens, tokens


# ---- section 2: pre-training ---------------------------------------------------------------------------
def pretrain_families(args: argparse.Namespace) -> None:
    """Pre-train each family, reload it, score it against the baseline; writes summary.json and the PNG."""
    if args.skip_pretrain:
        print(f"== pre-training skipped (--skip-pretrain): showing the checkpoints in {args.out}, if any ==\n")
        return
    logging.basicConfig(format="  %(message)s")
    logging.getLogger("triformers").setLevel(logging.INFO)  # tokenizer training and token-cache lines
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for family, recipe in recipes(args).items():
        rows.append(pretrain_one(family, recipe, args.out))
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    plot_curves(args.out, rows)
    print(f"loss curves: {args.out / 'loss_curves.png'}\n")


def pretrain_one(family: str, recipe: Recipe, out: Path) -> dict:
    options = recipe.options(family, out)
    print(f"== pre-training a tiny {family} model: {recipe.layers} layers, hidden {recipe.hidden_size}, "
          f"{recipe.steps} steps of {recipe.batch_size} x {recipe.seq_len} tokens, lr {recipe.lr:g} ==")
    start = time.perf_counter()
    result = pretrain(options)
    # the same split again, with the tokenizer just trained (so the token cache is re-used)
    dialect, tokenizer, _, objective, train_blocks, eval_blocks = prepare(replace(options, tokenizer=str(out / family)))
    model = AUTO[family].from_pretrained(out / family)
    counts = unigram_counts(train_blocks, objective.collator, objective.name, len(tokenizer))
    batches = list(collated(eval_blocks, objective.collator, recipe.batch_size, seed=2))
    loss, baseline, tokens = held_out_losses(model, batches, objective.name, counts)
    seconds = time.perf_counter() - start
    print(f"held-out loss {loss:.3f} vs unigram baseline {baseline:.3f} nats over {tokens} predicted tokens "
          f"({objective.name}); {seconds:.0f} s\n")
    return dict(family=family, dialect=dialect, objective=objective.name, params=model.num_parameters(),
                steps=result.step, held_out_loss=loss, unigram_baseline=baseline, held_out_tokens=tokens,
                train_loss=result.loss, seconds=seconds, recipe=asdict(recipe))


def plot_curves(out: Path, rows: list[dict]) -> None:
    """One PNG, one panel per family: training loss, held-out loss and the unigram baseline."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.8), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        lines = (out / row["family"] / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        held_out = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
        ax.plot(*zip(*train, strict=True), linewidth=0.8, alpha=0.7, label="training loss")
        if held_out:
            ax.plot(*zip(*held_out, strict=True), "o-", label="held-out loss")
        ax.axhline(row["unigram_baseline"], color="gray", linestyle="--", label="unigram baseline")
        ax.set(title=f"{row['family']} ({row['dialect']}, {row['objective']})", xlabel="step", ylabel="loss (nats)")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(out / "loss_curves.png", dpi=100)
    plt.close(figure)


# ---- sections 3-5: the reloaded models at work -----------------------------------------------------------
def load(args: argparse.Namespace, family: str):
    """(tokenizer, model) from OUT/<family> through the Auto classes, or None when it was not trained."""
    folder = args.out / family
    if not (folder / "config.json").is_file():
        print(f"(no {family} checkpoint in {folder}: run without --skip-pretrain first)\n")
        return None
    return AutoTokenizer.from_pretrained(folder), AUTO[family].from_pretrained(folder)


def fill_masks(args: argparse.Namespace) -> None:
    """Encoder-only: the top tokens for each [MASK]."""
    print("== encoder-only (MLM): filling masks with AutoModelForMaskedLM ==")
    if (loaded := load(args, "encoder")) is None:
        return
    tokenizer, model = loaded
    mask = tokenizer.mask_token
    for text in (f"Return the {mask} of the list.", f"Raise ValueError if the {mask} is not a string.",
                 f"This {mask} provides functions for working with {mask}."):
        batch = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            probs = model(**batch).logits.softmax(-1)[0]  # (T, V)
        print(f"  {text}")
        for position in (batch["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist():
            top = probs[position].topk(5)
            guesses = ", ".join(f"{tokenizer.decode([i])!r} {float(p):.2f}"
                                for p, i in zip(top.values, top.indices.tolist(), strict=True))
            print(f"    {mask} -> {guesses}")
    print()


def continue_prompts(args: argparse.Namespace) -> None:
    """Decoder-only: greedy and sampled continuations."""
    print("== decoder-only (CLM): continuing prompts with AutoModelForCausalLM.generate ==")
    if (loaded := load(args, "decoder")) is None:
        return
    tokenizer, model = loaded
    torch.manual_seed(0)  # the sampled continuations are the same on every run
    for prompt in ("Return a new", "This module provides", "If the file does not exist,"):
        batch = tokenizer(prompt, return_tensors="pt")
        for how, kwargs in (("greedy ", dict(do_sample=False)), ("sampled", dict(do_sample=True, top_k=40,
                                                                                   temperature=0.8))):
            ids = model.generate(**batch, max_new_tokens=20, **kwargs)
            new = tokenizer.decode(ids[0, batch["input_ids"].shape[1]:].tolist(), skip_special_tokens=True)
            print(f"  {how}: {prompt}|{' '.join(new.split())}")  # '|' marks where the model took over
    print()


def fill_spans(args: argparse.Namespace) -> None:
    """Encoder-decoder: the decoder writes `<extra_id_0> span <extra_id_1> span ...`; split it into spans."""
    print("== encoder-decoder (span corruption): filling sentinel spans with AutoModelForSeq2SeqLM.generate ==")
    if (loaded := load(args, "encoder-decoder")) is None:
        return
    tokenizer, model = loaded
    for text in (SEED_EXAMPLE, "Return the <extra_id_0> of the <extra_id_1> as a string."):
        batch = tokenizer(text, return_tensors="pt")
        ids = model.generate(**batch, max_new_tokens=24, do_sample=False)
        decoded = tokenizer.decode(ids[0].tolist(), skip_special_tokens=False)
        spans = sentinel_spans(decoded, tokenizer)
        filled = re.sub(r"<extra_id_(\d+)>", lambda m, spans=spans: f"[{spans.get(int(m.group(1)), '?')}]", text)
        print(f"  input : {text}\n  output: {decoded}")
        for n in sorted({int(n) for n in re.findall(r"<extra_id_(\d+)>", text)}):  # the input's sentinels
            print(f"    <extra_id_{n}> -> {spans.get(n, '(not generated)')!r}")
        print(f"  filled: {filled}")
    print()


def sentinel_spans(decoded: str, tokenizer) -> dict[int, str]:
    """{n: text after <extra_id_n>} in a decoded T5 target, without pad / </s>."""
    for special in (tokenizer.pad_token, tokenizer.eos_token):
        decoded = decoded.replace(special, " ")
    parts = re.split(r"<extra_id_(\d+)>", decoded)  # [before, n0, span0, n1, span1, ...]
    return {int(n): " ".join(span.split()) for n, span in zip(parts[1::2], parts[2::2], strict=True)}


# ---- section 6: the table ------------------------------------------------------------------------------
def summary_table(args: argparse.Namespace) -> None:
    path = args.out / "summary.json"
    if not path.is_file():
        return
    rows = json.loads(path.read_text())
    print("== pre-training summary: held-out loss vs unigram baseline (nats per predicted token) ==")
    header = f"{'family':<16} {'dialect':<8} {'params':>8} {'steps':>6} {'held-out loss':>14} " \
             f"{'unigram baseline':>17} {'wall time':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['family']:<16} {row['dialect']:<8} {row['params'] / 1e6:>7.2f}M {row['steps']:>6} "
              f"{row['held_out_loss']:>14.3f} {row['unigram_baseline']:>17.3f} {row['seconds']:>9.0f}s")
    beaten = sum(math.isfinite(r["held_out_loss"]) and r["held_out_loss"] < r["unigram_baseline"] for r in rows)
    print(f"{beaten} of {len(rows)} families beat their unigram baseline; curves in {args.out / 'loss_curves.png'}\n")


SECTIONS = [pretrain_families, fill_masks, continue_prompts, fill_spans, summary_table]
