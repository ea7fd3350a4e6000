"""CLI verbs for using a model: `triformers fill-mask | generate | text2text | classify | ner | qa | embed`.

Each takes `--model` (a folder or hub id) and texts as arguments, or one text per line on stdin
(`qa` reads its context whole); prints readable lines, or the pipeline's results as JSON with `--json`.

    triformers fill-mask --model bert-dir "Paris is the [MASK] of France."
    triformers generate --model gpt2-dir --max-new-tokens 30 "Once upon a time"
    triformers text2text --model t5-dir --task translation_en_to_de "The house is wonderful."
    triformers classify --model sst2-dir --top-k 2 "What a great film"
    triformers classify --model mnli-dir --labels sports,politics "The match ended 2-2"   # zero-shot
    echo "Zoë lives in São Paulo" | triformers ner --model ner-dir --json
    triformers qa --model squad-dir --question "Where does Zoë live?" "Zoë lives in São Paulo."
    triformers embed --model minilm-dir --pooling mean "a sentence" "another sentence"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable

from .registry import Command, register
from ..errors import InputError
from ..io.files import strict_json
from ..memory import parse_device, parse_dtype


# ---- flag values, checked when parsed: an error names the flag ------------------------------------------------
def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return parse


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    if high == math.inf:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    else:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number {allowed}, got {text}")
        return value
    return parse


def _checked(parse: Callable[[str, str], Any], name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text, name)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return convert


def _common(parser: argparse.ArgumentParser, stdin_whole: bool = False) -> None:
    parser.add_argument("texts", nargs="*", help="input texts (default: " +
                        ("all of stdin" if stdin_whole else "one per line on stdin") + ")")
    parser.add_argument("--model", required=True, help="model folder or hub id")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the model's)")
    parser.add_argument("--device", type=_checked(parse_device, "device"), help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", type=_checked(parse_dtype, "dtype"), help="float32, bfloat16, float16, auto")
    parser.add_argument("--batch-size", type=_at_least(1), default=8)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _texts(args: argparse.Namespace, whole: bool = False) -> list[str]:
    if args.texts:
        return list(args.texts)
    data = sys.stdin.read()
    texts = [data.strip()] if whole else [line.strip() for line in data.splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise InputError(f"{args.command}: no text given (as arguments or on stdin)")
    return texts


def _pipeline(args: argparse.Namespace, task: str, **kwargs: Any):
    from ..pipelines import pipeline

    return pipeline(task, model=args.model, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype,
                    batch_size=args.batch_size, **kwargs)


def _emit(args: argparse.Namespace, texts: list[str], results: list[Any], line: Callable[[Any], list[str]]) -> int:
    """JSON (one result per input) or, per input, the input then its result lines, indented."""
    if args.json:
        print(json.dumps(strict_json(results), ensure_ascii=False, allow_nan=False))  # NaN scores as null
        return 0
    for text, result in zip(texts, results, strict=True):
        if len(texts) > 1:
            print(text)
        for row in line(result):
            print(("  " if len(texts) > 1 else "") + row)
    return 0


# ---- verbs -------------------------------------------------------------------------------------------------
def _fill_mask_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--top-k", type=_at_least(1), default=5)
    parser.add_argument("--targets", help="comma-separated candidate tokens")


def run_fill_mask(args: argparse.Namespace) -> int:
    texts = _texts(args)
    targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
    results = _pipeline(args, "fill-mask")(texts, top_k=args.top_k, targets=targets)

    def lines(result: list) -> list[str]:
        masks = result if result and isinstance(result[0], list) else [result]
        return [f"{p['score']:.4f}  {p['token_str']!r:<16} {p['sequence']}" for mask in masks for p in mask]
    return _emit(args, texts, results, lines)


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--max-new-tokens", type=_at_least(1), default=50)
    parser.add_argument("--num-beams", type=_at_least(1), default=1)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy / beam search")
    parser.add_argument("--temperature", type=_number(0), default=1.0)
    parser.add_argument("--top-k", type=_at_least(0))
    parser.add_argument("--top-p", type=_number(0, 1, low_open=True))
    parser.add_argument("--num-return-sequences", type=_at_least(1), default=1)
    parser.add_argument("--repetition-penalty", type=_number(0, low_open=True), default=1.0)
    parser.add_argument("--seed", type=_at_least(0), help="makes sampling repeatable")
    parser.add_argument("--new-only", action="store_true", help="print only the generated continuation")


def _generate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = dict(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, do_sample=args.sample,
                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                  num_return_sequences=args.num_return_sequences, repetition_penalty=args.repetition_penalty)
    if args.seed is not None:
        kwargs["seed"] = args.seed
    return kwargs


def run_generate(args: argparse.Namespace) -> int:
    texts = _texts(args)
    results = _pipeline(args, "text-generation")(texts, return_full_text=not args.new_only, **_generate_kwargs(args))
    return _emit(args, texts, results, lambda records: [r["generated_text"] for r in records])


def _text2text_arguments(parser: argparse.ArgumentParser) -> None:
    _generate_arguments(parser)
    parser.add_argument("--task", default="text2text-generation",
                        help="text2text-generation | summarization | translation | translation_XX_to_YY")
    parser.add_argument("--src-lang")
    parser.add_argument("--tgt-lang")


def run_text2text(args: argparse.Namespace) -> int:
    if not (args.task in ("text2text-generation", "summarization") or args.task.startswith("translation")):
        raise InputError(f"text2text: --task must be text2text-generation, summarization or translation[_XX_to_YY], "
                         f"got {args.task!r}")
    texts = _texts(args)
    languages = {k: v for k, v in (("src_lang", args.src_lang), ("tgt_lang", args.tgt_lang)) if v}
    results = _pipeline(args, args.task, **languages)(texts, **_generate_kwargs(args))
    if all(isinstance(r, dict) for r in results):  # one record per input comes back flattened
        results = [[r] for r in results]
    return _emit(args, texts, results, lambda records: [next(iter(r.values())) for r in records])


def _classify_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--top-k", type=_at_least(0), default=1, help="labels per text (0: all)")
    parser.add_argument("--function", choices=["softmax", "sigmoid", "none"], help="score function")
    parser.add_argument("--labels", help="comma-separated candidate labels: zero-shot classification")
    parser.add_argument("--template", default="This example is {}.", help="zero-shot hypothesis template")
    parser.add_argument("--multi-label", action="store_true", help="zero-shot: labels scored independently")


def run_classify(args: argparse.Namespace) -> int:
    texts = _texts(args)
    if args.labels:
        results = _pipeline(args, "zero-shot-classification")(
            texts, candidate_labels=args.labels, hypothesis_template=args.template, multi_label=args.multi_label)
        results = [[{"label": lab, "score": s} for lab, s in zip(r["labels"], r["scores"], strict=True)]
                   [:args.top_k or None] for r in results]
    else:
        results = _pipeline(args, "text-classification")(texts, top_k=args.top_k or None,
                                                         function_to_apply=args.function)
    return _emit(args, texts, results, lambda ranked: [f"{r['label']:<20} {r['score']:.4f}" for r in ranked])


def _ner_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--aggregation", choices=["none", "simple", "first", "average", "max"], default="simple")


def run_ner(args: argparse.Namespace) -> int:
    texts = _texts(args)
    results = _pipeline(args, "token-classification")(texts, aggregation_strategy=args.aggregation)

    def lines(entities: list[dict]) -> list[str]:
        return [f"{e.get('entity_group', e.get('entity')):<10} {e['score']:.4f}  [{e['start']}:{e['end']}]  "
                f"{e['word']}" for e in entities] or ["(no entities)"]
    return _emit(args, texts, results, lines)


def _qa_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser, stdin_whole=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--top-k", type=_at_least(1), default=1)
    parser.add_argument("--max-answer-len", type=_at_least(1), default=15)
    parser.add_argument("--max-seq-len", type=_at_least(1))
    parser.add_argument("--doc-stride", type=_at_least(0))
    parser.add_argument("--handle-impossible", action="store_true", help="allow the empty answer")


def run_qa(args: argparse.Namespace) -> int:
    contexts = _texts(args, whole=True)
    qa = _pipeline(args, "question-answering")
    results = [qa(question=args.question, context=context, top_k=args.top_k, max_answer_len=args.max_answer_len,
                  max_seq_len=args.max_seq_len, doc_stride=args.doc_stride,
                  handle_impossible_answer=args.handle_impossible) for context in contexts]

    def lines(result: Any) -> list[str]:
        answers = result if isinstance(result, list) else [result]
        return [f"{a['answer']!r}  score {a['score']:.4f}  chars [{a['start']}:{a['end']}]" for a in answers]
    return _emit(args, contexts, results, lines)


def _embed_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--pooling", choices=["mean", "cls", "none"], default="mean",
                        help="none: one vector per token")
    parser.add_argument("--no-normalize", action="store_true", help="keep the raw (not unit-length) vectors")


def run_embed(args: argparse.Namespace) -> int:
    texts = _texts(args)
    pooling = None if args.pooling == "none" else args.pooling
    results = _pipeline(args, "feature-extraction")(texts, pooling=pooling, normalize=not args.no_normalize)

    def lines(vector: list) -> list[str]:
        if pooling is None:
            return [f"{len(vector[0])} token vectors of {len(vector[0][0])} dimensions"]
        head = " ".join(f"{x:+.4f}" for x in vector[:8])
        return [f"[{len(vector)}] {head}{' ...' if len(vector) > 8 else ''}"]
    return _emit(args, texts, results, lines)


VERBS = (
    Command("fill-mask", "fill the mask token(s) of each text with a masked-LM model", _fill_mask_arguments,
            run_fill_mask),
    Command("generate", "continue each prompt with a decoder-only model", _generate_arguments, run_generate),
    Command("text2text", "text-to-text, summarization or translation with an encoder-decoder model",
            _text2text_arguments, run_text2text),
    Command("classify", "label each text (or zero-shot with --labels)", _classify_arguments, run_classify),
    Command("ner", "find named entities, with character offsets", _ner_arguments, run_ner),
    Command("qa", "answer --question from each context (extractive)", _qa_arguments, run_qa),
    Command("embed", "sentence (or token) embeddings", _embed_arguments, run_embed),
)
for _verb in VERBS:
    register(_verb)
