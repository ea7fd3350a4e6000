"""Pipelines against transformers 5.24's pipelines on the same tiny random checkpoints (fill-mask,
text-generation, text-classification, token-classification, feature-extraction, zero-shot), and
against expectations computed by hand from the model's own logits where transformers v5 dropped the
pipeline (question-answering, summarization, translation). Scores are compared at abs 1e-4: both
sides run the same fp32 maths, but batch padding and summation order move the last bits.
"""

from __future__ import annotations

import functools
import json
import shutil

import pytest
import torch
import transformers as tr

from triformers import AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM, AutoTokenizer, InputError
from triformers.pipelines import pipeline

from conftest import asset

BERT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
BERT_SIZES = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=37, max_position_embeddings=64)
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
TEXTS = ["Paris is the capital of France.", "Hugging Face was founded in New York by Clément Delangue."]
TOL = 1e-4


def same(ours, theirs, path="result"):
    """Equal structure, equal strings and ints, floats within TOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), f"{path}: keys {ours} vs {theirs}"
        for key in theirs:
            same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), f"{path}: {ours} vs {theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, str) or isinstance(theirs, int) and not hasattr(theirs, "dtype"):
        assert ours == theirs, f"{path}: {ours!r} vs {theirs!r}"
    else:
        assert abs(float(ours) - float(theirs)) <= TOL, f"{path}: {ours} vs {theirs}"


def perturb(model: torch.nn.Module, scale: float = 0.5) -> None:
    """Random init gives near-uniform outputs; larger weights make the predictions differ by token."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" not in name and "ln_" not in name and "layer_norm" not in name:
                param.add_(torch.randn_like(param) * scale * param.std().clamp(min=0.02))


def build_bert(folder, cls, **config):
    torch.manual_seed(0)
    model = cls(tr.BertConfig(**BERT_SIZES, **config))
    perturb(model)
    model.save_pretrained(folder)
    for name in BERT_FILES:
        shutil.copy(asset(f"all-MiniLM-L6-v2/{name}"), folder / name)
    return str(folder)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """Folders of tiny BERTs with each head, sharing one real WordPiece tokenizer."""
    root = tmp_path_factory.mktemp("bert")
    return {
        "mlm": build_bert(root / "mlm", tr.BertForMaskedLM),
        "ner": build_bert(root / "ner", tr.BertForTokenClassification, id2label=NER_LABELS,
                          label2id={v: k for k, v in NER_LABELS.items()}),
        "nli": build_bert(root / "nli", tr.BertForSequenceClassification, id2label=NLI_LABELS,
                          label2id={v: k for k, v in NLI_LABELS.items()}),
        "multi": build_bert(root / "multi", tr.BertForSequenceClassification, num_labels=3,
                            problem_type="multi_label_classification"),
        "qa": build_bert(root / "qa", tr.BertForQuestionAnswering),
        "base": build_bert(root / "base", tr.BertModel),
    }


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    model = tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=2, n_positions=64))
    perturb(model)
    model.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(asset(f"gpt2-tokenizer/{name}"), folder / name)
    return str(folder)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5")
    for name in ("spiece.model", "tokenizer_config.json"):
        shutil.copy(asset(f"spm-tokenizer/{name}"), folder / name)
    vocab = len(AutoTokenizer.from_pretrained(str(folder)))
    params = {"summarization": {"prefix": "summarize: ", "num_beams": 2, "max_length": 12, "min_length": 3},
              "translation_en_to_de": {"prefix": "translate English to German: ", "max_length": 10}}
    torch.manual_seed(0)
    model = tr.T5ForConditionalGeneration(tr.T5Config(
        vocab_size=vocab, d_model=32, d_kv=8, num_heads=2, d_ff=48, num_layers=2, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1, task_specific_params=params))
    perturb(model)
    model.save_pretrained(folder)
    return str(folder)


# ---- against transformers' pipelines -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"targets": ["paris", "london", "city"]}])
def test_fill_mask_matches_transformers(bert, kwargs):
    texts = ["The capital of France is [MASK].", "[MASK] is a [MASK] city."]
    theirs = tr.pipeline("fill-mask", model=bert["mlm"])
    ours = pipeline("fill-mask", model=bert["mlm"], batch_size=2)
    same(ours(texts, **kwargs), theirs(texts, **kwargs))
    same(ours(texts[0], **kwargs), theirs(texts[0], **kwargs))


def test_text_generation_matches_transformers(gpt2):
    prompts = ["Hello, my name is", "The weather today"]
    theirs = tr.pipeline("text-generation", model=gpt2)
    ours = pipeline("text-generation", model=gpt2)
    for kwargs in ({"max_new_tokens": 6, "do_sample": False},
                   {"max_new_tokens": 4, "num_beams": 3, "do_sample": False, "num_return_sequences": 2,
                    "return_full_text": False}):
        same(ours(prompts, **kwargs), theirs(prompts, **kwargs))
    batched = pipeline("text-generation", model=gpt2, batch_size=2)  # left padding must not change greedy output
    same(batched(prompts, max_new_tokens=6, do_sample=False), theirs(prompts, max_new_tokens=6, do_sample=False))


@pytest.mark.parametrize("head,kwargs", [("nli", {}), ("nli", {"top_k": 2}), ("nli", {"top_k": None}),
                                         ("nli", {"function_to_apply": "sigmoid"}), ("multi", {}),
                                         ("multi", {"top_k": None})])
def test_text_classification_matches_transformers(bert, head, kwargs):
    theirs = tr.pipeline("text-classification", model=bert[head])
    ours = pipeline("sentiment-analysis", model=bert[head], batch_size=2)
    same(ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs))
    same(ours(TEXTS[0], **kwargs), theirs(TEXTS[0], **kwargs))
    pair = {"text": TEXTS[0], "text_pair": TEXTS[1]}
    same(ours(pair, **kwargs), theirs(pair, **kwargs))


NER_TEXTS = TEXTS + ["Zoë Ångström visited 東京 and São Paulo 🎉 yesterday!", "unaffable tokenizationally"]


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_matches_transformers(bert, strategy):
    theirs = tr.pipeline("token-classification", model=bert["ner"], aggregation_strategy=strategy)
    ours = pipeline("ner", model=bert["ner"], aggregation_strategy=strategy, batch_size=3)
    expected = theirs(NER_TEXTS)
    got = ours(NER_TEXTS)
    assert sum(len(entities) for entities in got) > 4  # the perturbed model does predict entities
    same(got, expected)
    for text, entities in zip(NER_TEXTS, got, strict=True):
        for entity in entities:
            piece = text[entity["start"]:entity["end"]]
            assert piece and piece.strip() == piece


def test_token_offsets_are_exact_characters(bert):
    """Every token's span, joined where spans touch, gives back the input's own words (accents, CJK, emoji)."""
    text = NER_TEXTS[2]
    ner = pipeline("token-classification", model=bert["ner"], ignore_labels=[])
    words, last_end = [], None
    for token in ner(text):
        if token["start"] == last_end:
            words[-1] += text[token["start"]:token["end"]]
        else:
            words.append(text[token["start"]:token["end"]])
        last_end = token["end"]
    assert words == ["Zoë", "Ångström", "visited", "東京", "and", "São", "Paulo", "🎉", "yesterday!"]
    grouped = pipeline("token-classification", model=bert["ner"], aggregation_strategy="first", ignore_labels=[])
    spans = [text[e["start"]:e["end"]] for e in grouped(text)]
    assert "".join(spans).replace(" ", "") == text.replace(" ", "")  # groups tile the text


def test_token_classification_split_words_matches_transformers(bert):
    words = ["Zoë", "lives", "in", "São", "Paulo"]
    theirs = tr.pipeline("token-classification", model=bert["ner"], aggregation_strategy="first")
    ours = pipeline("token-classification", model=bert["ner"], aggregation_strategy="first")
    same(ours(words, is_split_into_words=True), theirs(words, is_split_into_words=True))


@pytest.mark.parametrize("head", ["base", "ner"])
def test_feature_extraction_matches_transformers(bert, head):
    theirs = tr.pipeline("feature-extraction", model=bert[head])
    ours = pipeline("feature-extraction", model=bert[head], batch_size=2)
    same(ours(TEXTS), theirs(TEXTS))
    tokens = torch.tensor(theirs(TEXTS[1])[0])  # (T, H)
    mean = ours(TEXTS, pooling="mean", normalize=True)[1]
    torch.testing.assert_close(torch.tensor(mean), torch.nn.functional.normalize(tokens.mean(0), dim=0),
                               atol=TOL, rtol=0)
    torch.testing.assert_close(torch.tensor(ours(TEXTS[1], pooling="cls")), tokens[0], atol=TOL, rtol=0)


@pytest.mark.parametrize("kwargs", [{}, {"multi_label": True}, {"hypothesis_template": "It is about {}."}])
def test_zero_shot_nli_matches_transformers(bert, kwargs):
    labels = ["politics", "travel", "cooking"]
    theirs = tr.pipeline("zero-shot-classification", model=bert["nli"])
    ours = pipeline("zero-shot-classification", model=bert["nli"], batch_size=4)
    same(ours(TEXTS, candidate_labels=labels, **kwargs), theirs(TEXTS, candidate_labels=labels, **kwargs))
    same(ours(TEXTS[0], "politics, travel"), theirs(TEXTS[0], "politics, travel"))


# ---- against the model's own logits --------------------------------------------------------------------
def best_span(start_logits, end_logits, context_tokens, max_answer_len=15):
    """Brute force over valid spans: softmax over context tokens + CLS, best p_start * p_end."""
    allowed = context_tokens.clone()
    allowed[0] = True  # CLS
    p_start = torch.softmax(start_logits.masked_fill(~allowed, -10000.0), -1)
    p_end = torch.softmax(end_logits.masked_fill(~allowed, -10000.0), -1)
    n = len(context_tokens)
    start, end = torch.arange(n)[:, None], torch.arange(n)[None, :]
    valid = (start <= end) & (end < start + max_answer_len) & context_tokens[:, None] & context_tokens[None, :]
    scores = torch.where(valid, p_start[:, None] * p_end[None, :], torch.tensor(-1.0))
    flat = int(scores.argmax())
    return (float(scores.flatten()[flat]), (flat // n, flat % n)), float(p_start[0] * p_end[0])


@torch.no_grad()
def test_question_answering_matches_logits_and_maps_characters(bert):
    question = "Where does Zoë live?"
    context = "Zoë Ångström lives in 東京 near the river 🎉, and she likes São Paulo too."
    qa = pipeline("question-answering", model=bert["qa"])
    model = AutoModelForQuestionAnswering.from_pretrained(bert["qa"])
    tok = AutoTokenizer.from_pretrained(bert["qa"])
    batch = tok(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = batch.pop("offset_mapping")[0].tolist()
    out = model(**batch)
    context_tokens = torch.tensor([s == 1 for s in batch.sequence_ids(0)])
    (score, (s, e)), null = best_span(out.start_logits[0], out.end_logits[0], context_tokens, max_answer_len=6)
    got = qa(question=question, context=context, max_answer_len=6, align_to_words=False)
    assert got["score"] == pytest.approx(score, abs=1e-6)
    assert (got["start"], got["end"]) == (offsets[s][0], offsets[e][1])
    assert got["answer"] == context[got["start"]:got["end"]] and got["answer"]
    top = qa({"question": question, "context": context}, top_k=3, max_answer_len=6, handle_impossible_answer=True)
    assert [a["score"] for a in top] == sorted((a["score"] for a in top), reverse=True)
    assert any(a["answer"] == "" and a["score"] == pytest.approx(null, abs=1e-6) for a in top) == (
        null >= top[-1]["score"])
    for answer in top:
        assert context[answer["start"]:answer["end"]] == answer["answer"]


@torch.no_grad()
def test_question_answering_long_context_uses_stride_windows(bert):
    """A context longer than max_seq_len is read in overlapping windows; the answer is the best of all of them."""
    question = "Who?"
    context = " ".join(f"word{i} Zoë" for i in range(30))  # ~150 tokens
    qa = pipeline("question-answering", model=bert["qa"], max_seq_len=48, doc_stride=16)
    windows = qa.windows(question, context, 48, 16)
    assert len(windows) >= 3 and all(len(w.ids) <= 48 for w in windows)
    model = qa.model
    best = (-1.0, None)
    for window in windows:
        ids = torch.tensor([window.ids])
        out = model(input_ids=ids, token_type_ids=torch.tensor([window.type_ids]))
        context_tokens = torch.tensor([s == 1 for s in window.sequence_ids])
        (score, (s, e)), _ = best_span(out.start_logits[0], out.end_logits[0], context_tokens)
        if score > best[0]:
            best = (score, (window.offsets[s][0], window.offsets[e][1]))
    got = qa(question=[question, question], context=[context, context], align_to_words=False)
    assert got[0] == got[1]
    assert got[0]["score"] == pytest.approx(best[0], abs=1e-6)
    assert (got[0]["start"], got[0]["end"]) == best[1]
    aligned = qa(question=question, context=context)  # whole words: never starts or ends inside a word
    start, end = aligned["start"], aligned["end"]
    assert (start == 0 or context[start - 1] == " ") and (end == len(context) or context[end] == " ")


@functools.cache
def seq2seq(folder):
    return AutoModelForSeq2SeqLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@torch.no_grad()
def greedy_reference(folder, text, steps):
    """Greedy decoding by hand: argmax of the model's own logits, step by step, until EOS."""
    model, tok = seq2seq(folder)
    enc = tok(text, return_tensors="pt")
    decoded = [model.config.decoder_start_token_id]
    for _ in range(steps):
        logits = model(**enc, decoder_input_ids=torch.tensor([decoded])).logits[0, -1]
        decoded.append(int(logits.argmax()))
        if decoded[-1] == tok.eos_token_id:
            break
    return tok.decode(decoded, skip_special_tokens=True)


def test_text2text_summarization_translation_match_greedy_logits(t5):
    text = "the quick brown fox jumps over the lazy dog"
    plain = pipeline("text2text-generation", model=t5)
    assert plain(text, max_new_tokens=7) == [{"generated_text": greedy_reference(t5, text, 7)}]
    summarize = pipeline("summarization", model=t5)  # prefix and beam settings from task_specific_params
    expected = greedy_reference(t5, "summarize: " + text, 7)
    assert summarize(text, num_beams=1, max_new_tokens=7, min_new_tokens=0) == [{"summary_text": expected}]
    assert summarize([text, text], batch_size=2, num_beams=1, max_new_tokens=7, min_new_tokens=0) == [
        {"summary_text": expected}] * 2
    translated = greedy_reference(t5, "translate English to German: " + text, 5)
    for task, kwargs in (("translation_en_to_de", {}), ("translation", {"src_lang": "en", "tgt_lang": "de"}),
                         ("translation", {})):
        translate = pipeline(task, model=t5, **kwargs)
        assert translate(text, max_new_tokens=5) == [{"translation_text": translated}], task
    french = greedy_reference(t5, "translate English to French: " + text, 5)
    assert pipeline("translation_en_to_fr", model=t5)(text, max_new_tokens=5) == [{"translation_text": french}]


@torch.no_grad()
def test_zero_shot_with_language_models_compares_label_likelihoods(gpt2, t5):
    labels = ["sports", "cooking"]
    for folder in (gpt2, t5):
        zero_shot = pipeline("zero-shot-classification", model=folder, batch_size=2)
        assert zero_shot.model.head == "lm"
        result = zero_shot("The match ended in a draw.", candidate_labels=labels)
        loglik = {}
        for label in labels:  # by hand, one label at a time
            total, count = (zero_shot.decoder_loglik if folder == gpt2 else zero_shot.seq2seq_loglik)(
                [("The match ended in a draw.", f"This example is {label}.")])
            loglik[label] = float(total)
        expected = torch.softmax(torch.tensor([loglik[label] for label in result["labels"]]), 0)
        assert result["scores"] == pytest.approx(expected.tolist(), abs=1e-5)
        assert result["scores"][0] >= result["scores"][1]
        multi = zero_shot(["a", "b"], candidate_labels=labels, multi_label=True)
        assert len(multi) == 2 and all(0 < s < 1 for r in multi for s in r["scores"])


@torch.no_grad()
def test_decoder_loglik_counts_only_hypothesis_tokens(gpt2):
    """The decoder log-likelihood sums log P(token | previous) over the hypothesis tokens only."""
    zero_shot = pipeline("zero-shot-classification", model=gpt2)
    tok = zero_shot.tokenizer
    context, hyp = tok("Hello there")["input_ids"], tok(" This is it.", add_special_tokens=False)["input_ids"]
    logits = zero_shot.model(input_ids=torch.tensor([context + hyp])).logits[0].log_softmax(-1)
    expected = sum(float(logits[len(context) + i - 1, t]) for i, t in enumerate(hyp))
    total, count = zero_shot.decoder_loglik([("Hello there", "This is it.")])
    assert float(total) == pytest.approx(expected, abs=1e-4) and int(count) == len(hyp)


def test_errors_name_the_problem(bert, gpt2):
    with pytest.raises(InputError, match="unknown task"):
        pipeline("fill-the-blank", model=bert["mlm"])
    with pytest.raises(InputError, match="no mask token"):
        pipeline("fill-mask", model=bert["mlm"])("no mask here")
    with pytest.raises(InputError, match="text-generation needs a decoder"):
        pipeline("text-generation", model=AutoModelForQuestionAnswering.from_pretrained(bert["qa"]),
                 tokenizer=bert["qa"])
    with pytest.raises(InputError, match="needs tokenizer"):
        pipeline("question-answering", model=AutoModelForQuestionAnswering.from_pretrained(bert["qa"]))
    with pytest.raises(InputError, match="aggregation_strategy"):
        pipeline("ner", model=bert["ner"])("x", aggregation_strategy="longest")
    with pytest.raises(InputError, match="candidate_labels"):
        pipeline("zero-shot-classification", model=bert["nli"])("text")


def test_device_and_dtype_are_honoured(bert):
    clf = pipeline("text-classification", model=bert["nli"], device="cpu", dtype="bfloat16")
    assert clf.model.dtype == torch.bfloat16 and clf.device.type == "cpu"
    full = pipeline("text-classification", model=bert["nli"], device=-1)
    assert clf(TEXTS[0])[0]["label"] in NLI_LABELS.values()
    assert clf(TEXTS[0])[0]["score"] == pytest.approx(full(TEXTS[0])[0]["score"], abs=2e-2)
    with pytest.raises(InputError, match="dtype"):
        pipeline("text-classification", model=bert["nli"], dtype="float13")


# ---- CLI verbs ------------------------------------------------------------------------------------------
def cli(argv, capsys, stdin=None, monkeypatch=None):
    from triformers.cli import main

    if stdin is not None:
        import io
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_verbs_print_readable_and_json(bert, gpt2, t5, capsys, monkeypatch):
    text = "The capital of France is [MASK]."
    code, out, _ = cli(["fill-mask", "--model", bert["mlm"], "--top-k", "2", text], capsys)
    best = pipeline("fill-mask", model=bert["mlm"])(text, top_k=2)
    assert code == 0 and len(out.splitlines()) == 2 and best[0]["sequence"] in out.splitlines()[0]
    code, out, _ = cli(["fill-mask", "--model", bert["mlm"], "--json"], capsys, stdin=text + "\n\n",
                       monkeypatch=monkeypatch)
    same(json.loads(out), [pipeline("fill-mask", model=bert["mlm"])(text)])

    code, out, _ = cli(["generate", "--model", gpt2, "--max-new-tokens", "5", "--json", "Hello", "Bye"], capsys)
    expected = pipeline("text-generation", model=gpt2)(["Hello", "Bye"], max_new_tokens=5, do_sample=False)
    assert code == 0 and json.loads(out) == expected

    code, out, _ = cli(["text2text", "--model", t5, "--task", "translation_en_to_de", "--max-new-tokens", "4",
                        "a house"], capsys)
    assert out.strip() == greedy_reference(t5, "translate English to German: a house", 4)

    code, out, _ = cli(["classify", "--model", bert["nli"], "--top-k", "0", "--json", TEXTS[0]], capsys)
    assert json.loads(out) == [pipeline("text-classification", model=bert["nli"])(TEXTS[0], top_k=None)]
    code, out, _ = cli(["classify", "--model", bert["nli"], "--labels", "travel,food", TEXTS[0]], capsys)
    zero_shot = pipeline("zero-shot-classification", model=bert["nli"])
    assert out.split()[0] == zero_shot(TEXTS[0], "travel,food")["labels"][0]

    code, out, _ = cli(["ner", "--model", bert["ner"], "--json", NER_TEXTS[2]], capsys)
    entities = json.loads(out)[0]
    assert entities == pipeline("ner", model=bert["ner"], aggregation_strategy="simple")(NER_TEXTS[2])
    code, out, _ = cli(["ner", "--model", bert["ner"], NER_TEXTS[2]], capsys)
    assert all(f"[{e['start']}:{e['end']}]" in out for e in entities)

    context = "Zoë lives in São Paulo, near 東京 🎉."
    code, out, _ = cli(["qa", "--model", bert["qa"], "--question", "Where?", "--json"], capsys,
                       stdin=context, monkeypatch=monkeypatch)
    answer = json.loads(out)[0]
    assert answer == pipeline("question-answering", model=bert["qa"])(question="Where?", context=context)
    assert context[answer["start"]:answer["end"]] == answer["answer"]

    code, out, _ = cli(["embed", "--model", bert["base"], "--json", "one", "two"], capsys)
    vectors = torch.tensor(json.loads(out))
    assert vectors.shape == (2, 32) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-5)
    code, out, _ = cli(["embed", "--model", bert["base"], "one"], capsys)
    assert out.startswith("[32] ")

    code, _, err = cli(["fill-mask", "--model", bert["mlm"], "no mask"], capsys)
    assert code == 1 and "no mask token" in err
