"""transformers' documentation recipes (the task guides: sequence classification, summarization, causal and masked
language modelling, token classification; extractive QA as the course writes it) run with `from triformers
import ...` where they say `from transformers import ...`, on tiny local checkpoints and small local data loaded
with the real `datasets`.

What is not the guides' own code, in every recipe: the checkpoint and data names (local folders and files), the
`evaluate.load(...)` metric (rouge-score / seqeval / numpy stand-ins with its `.compute` interface, see
trainer_assets.py), and `push_to_hub=True` / `fp16=True` left out of the arguments (no network, no GPU; both are
refused with an error naming them). Epochs and batch sizes are the guides'; the data are a few dozen rows.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from trainer_assets import WORDS, Accuracy, Rouge, Seqeval, sentence, tiny_bert, tiny_gpt2, tiny_t5, write_jsonl

datasets = pytest.importorskip("datasets")
load_dataset = datasets.load_dataset


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """The guides write to relative output_dirs ("my_awesome_model"): run each in its own folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


def test_sequence_classification_guide(tmp_path):
    rng = random.Random(0)
    for split, n in (("train", 48), ("test", 16)):
        rows = [sentence(rng, rng.randint(4, 12)) for _ in range(n)]
        (tmp_path / f"{split}.csv").write_text("text,label\n" + "".join(f"{t},{int('cat' in t)}\n" for t in rows))
    checkpoint = tiny_bert(tmp_path / "tiny-bert-base", head="BertForMaskedLM")  # bert-base: no classifier yet
    # ---- the guide, from here on
    imdb = load_dataset("csv", data_files={"train": "train.csv", "test": "test.csv"})
    from triformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def preprocess_function(examples):
        return tokenizer(examples["text"], truncation=True)

    tokenized_imdb = imdb.map(preprocess_function, batched=True)
    from triformers import DataCollatorWithPadding
    data_collator = DataCollatorWithPadding(tokenizer=tokenizer)
    accuracy = Accuracy()  # evaluate.load("accuracy")

    def compute_metrics(eval_pred):
        predictions, labels = eval_pred
        predictions = np.argmax(predictions, axis=1)
        return accuracy.compute(predictions=predictions, references=labels)

    id2label = {0: "NEGATIVE", 1: "POSITIVE"}
    label2id = {"NEGATIVE": 0, "POSITIVE": 1}
    from triformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2, id2label=id2label,
                                                               label2id=label2id)
    training_args = TrainingArguments(output_dir="my_awesome_model", learning_rate=2e-5, per_device_train_batch_size=16,
                                      per_device_eval_batch_size=16, num_train_epochs=2, weight_decay=0.01,
                                      eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=tokenized_imdb["train"],
                      eval_dataset=tokenized_imdb["test"], processing_class=tokenizer, data_collator=data_collator,
                      compute_metrics=compute_metrics)
    output = trainer.train()
    # ---- what it did
    assert output.global_step == 6 and trainer.state.global_step == 6  # 2 epochs of 3 batches
    evaluations = [r for r in trainer.state.log_history if "eval_loss" in r]
    assert [r["epoch"] for r in evaluations] == [1.0, 2.0] and all("eval_accuracy" in r for r in evaluations)
    assert trainer.state.best_model_checkpoint is not None and trainer.state.best_metric == min(
        r["eval_loss"] for r in evaluations)
    assert (tmp_path / "my_awesome_model" / "config.json").is_file()  # the final (best) model
    assert (tmp_path / "my_awesome_model" / "tokenizer.json").is_file()  # with its tokenizer


def test_summarization_guide(tmp_path):
    rng = random.Random(1)
    rows = []
    for _ in range(40):
        text = sentence(rng, rng.randint(12, 30))
        rows.append({"text": text, "summary": " ".join(text.split()[:4]), "title": text.split()[0]})
    write_jsonl(tmp_path / "billsum.jsonl", rows)
    checkpoint = tiny_t5(tmp_path / "tiny-t5")
    # ---- the guide
    billsum = load_dataset("json", data_files="billsum.jsonl", split="train")
    billsum = billsum.train_test_split(test_size=0.2)
    from triformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    prefix = "summarize: "

    def preprocess_function(examples):
        inputs = [prefix + doc for doc in examples["text"]]
        model_inputs = tokenizer(inputs, max_length=1024, truncation=True)
        labels = tokenizer(text_target=examples["summary"], max_length=128, truncation=True)
        model_inputs["labels"] = labels["input_ids"]
        return model_inputs

    tokenized_billsum = billsum.map(preprocess_function, batched=True)
    from triformers import DataCollatorForSeq2Seq
    data_collator = DataCollatorForSeq2Seq(tokenizer=tokenizer, model=checkpoint)
    rouge = Rouge()  # evaluate.load("rouge")

    def compute_metrics(eval_pred):
        predictions, labels = eval_pred
        decoded_preds = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        decoded_labels = tokenizer.batch_decode(labels, skip_special_tokens=True)
        result = rouge.compute(predictions=decoded_preds, references=decoded_labels, use_stemmer=True)
        prediction_lens = [np.count_nonzero(pred != tokenizer.pad_token_id) for pred in predictions]
        result["gen_len"] = np.mean(prediction_lens)
        return {k: round(v, 4) for k, v in result.items()}

    from triformers import AutoModelForSeq2SeqLM, Seq2SeqTrainer, Seq2SeqTrainingArguments
    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
    training_args = Seq2SeqTrainingArguments(output_dir="my_awesome_billsum_model", eval_strategy="epoch",
                                             learning_rate=2e-5, per_device_train_batch_size=16,
                                             per_device_eval_batch_size=16, weight_decay=0.01, save_total_limit=3,
                                             num_train_epochs=4, predict_with_generate=True)
    trainer = Seq2SeqTrainer(model=model, args=training_args, train_dataset=tokenized_billsum["train"],
                             eval_dataset=tokenized_billsum["test"], processing_class=tokenizer,
                             data_collator=data_collator, compute_metrics=compute_metrics)
    trainer.train()
    # ---- what it did
    evaluations = [r for r in trainer.state.log_history if "eval_loss" in r]
    assert len(evaluations) == 4 and {"eval_rouge1", "eval_rougeL", "eval_gen_len"} <= set(evaluations[-1])
    saved = [p.name for p in (tmp_path / "my_awesome_billsum_model" / "checkpoints").iterdir()]
    assert saved == ["checkpoint-0000008"]  # save_steps 500: only the end of the run, as transformers


def eli5_rows(rng: random.Random, n: int) -> list[dict]:
    """ELI5-shaped records: the answers are a nested {"text": [...], "score": [...]} as in eli5_category."""
    return [{"q_id": str(i), "title": sentence(rng, 6),
             "answers": {"a_id": ["a", "b"], "text": [sentence(rng, 20), sentence(rng, 25)], "score": [1, 2]}}
            for i in range(n)]


def group_texts_for(block_size):
    def group_texts(examples):  # the guide's
        concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        if total_length >= block_size:
            total_length = (total_length // block_size) * block_size
        result = {k: [t[i: i + block_size] for i in range(0, total_length, block_size)]
                  for k, t in concatenated_examples.items()}
        result["labels"] = result["input_ids"].copy()
        return result
    return group_texts


def test_causal_language_modeling_guide(tmp_path):
    write_jsonl(tmp_path / "eli5.jsonl", eli5_rows(random.Random(2), 60))
    checkpoint = tiny_gpt2(tmp_path / "tiny-gpt2")
    # ---- the guide
    eli5 = load_dataset("json", data_files="eli5.jsonl", split="train[:5000]")
    eli5 = eli5.train_test_split(test_size=0.2)
    from triformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    eli5 = eli5.flatten()

    def preprocess_function(examples):
        return tokenizer([" ".join(x) for x in examples["answers.text"]])

    tokenized_eli5 = eli5.map(preprocess_function, batched=True, num_proc=4, remove_columns=eli5["train"].column_names)
    block_size = 128
    group_texts = group_texts_for(block_size)
    lm_dataset = tokenized_eli5.map(group_texts, batched=True, num_proc=4)
    from triformers import DataCollatorForLanguageModeling
    tokenizer.pad_token = tokenizer.eos_token
    data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)
    from triformers import AutoModelForCausalLM, Trainer, TrainingArguments
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    training_args = TrainingArguments(output_dir="my_awesome_eli5_clm-model", eval_strategy="epoch", learning_rate=2e-5,
                                      weight_decay=0.01)
    trainer = Trainer(model=model, args=training_args, train_dataset=lm_dataset["train"],
                      eval_dataset=lm_dataset["test"], data_collator=data_collator, processing_class=tokenizer)
    trainer.train()
    eval_results = trainer.evaluate()
    print(f"Perplexity: {math.exp(eval_results['eval_loss']):.2f}")
    # ---- what it did
    blocks = len(lm_dataset["train"])
    assert blocks >= 8 and trainer.state.global_step == 3 * math.ceil(blocks / 8)  # 3 epochs (the default) of 8
    assert math.isfinite(eval_results["eval_loss"]) and eval_results["epoch"] == 3.0


def test_masked_language_modeling_guide(tmp_path):
    write_jsonl(tmp_path / "eli5.jsonl", eli5_rows(random.Random(3), 60))
    checkpoint = tiny_bert(tmp_path / "tiny-bert-mlm", head="BertForMaskedLM")
    # ---- the guide (distilroberta there, a BERT here)
    eli5 = load_dataset("json", data_files="eli5.jsonl", split="train[:5000]")
    eli5 = eli5.train_test_split(test_size=0.2)
    eli5 = eli5.flatten()
    from triformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def preprocess_function(examples):
        return tokenizer([" ".join(x) for x in examples["answers.text"]])

    tokenized_eli5 = eli5.map(preprocess_function, batched=True, num_proc=4, remove_columns=eli5["train"].column_names)
    block_size = 128
    lm_dataset = tokenized_eli5.map(group_texts_for(block_size), batched=True, num_proc=4)
    from triformers import DataCollatorForLanguageModeling
    # (the guide's `tokenizer.pad_token = tokenizer.eos_token` is for RoBERTa: BERT has no EOS, and pads with [PAD])
    data_collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    from triformers import AutoModelForMaskedLM, Trainer, TrainingArguments
    model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    training_args = TrainingArguments(output_dir="my_awesome_eli5_mlm_model", eval_strategy="epoch", learning_rate=2e-5,
                                      num_train_epochs=3, weight_decay=0.01)
    trainer = Trainer(model=model, args=training_args, train_dataset=lm_dataset["train"],
                      eval_dataset=lm_dataset["test"], data_collator=data_collator, processing_class=tokenizer)
    trainer.train()
    eval_results = trainer.evaluate()
    print(f"Perplexity: {math.exp(eval_results['eval_loss']):.2f}")
    # ---- what it did
    assert math.isfinite(eval_results["eval_loss"]) and len([r for r in trainer.state.log_history
                                                             if "eval_loss" in r]) == 4  # 3 epochs + the call
    assert eval_results["eval_loss"] == trainer.evaluate()["eval_loss"]  # the same masks at every evaluation


def test_token_classification_guide(tmp_path):
    label_names = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group",
                   "I-group", "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]
    rng = random.Random(4)
    for split, n in (("train", 32), ("test", 16)):
        rows = []
        for i in range(n):
            tokens = [rng.choice(WORDS + ["Paris", "London", "Anna", "Tokyo"]) for _ in range(rng.randint(4, 10))]
            tags = [7 if t in ("Paris", "London", "Tokyo") else 9 if t == "Anna" else 0 for t in tokens]
            rows.append({"id": str(i), "tokens": tokens, "ner_tags": tags})
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    features = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=label_names))})
    checkpoint = tiny_bert(tmp_path / "tiny-bert-base", head="BertForMaskedLM")  # a base checkpoint, as the guide
    # ---- the guide
    wnut = load_dataset("json", data_files={"train": "train.jsonl", "test": "test.jsonl"}, features=features)
    label_list = wnut["train"].features["ner_tags"].feature.names
    from triformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    example = wnut["train"][0]
    tokenized_input = tokenizer(example["tokens"], is_split_into_words=True)
    tokens = tokenizer.convert_ids_to_tokens(tokenized_input["input_ids"])
    assert tokens[0] == "[CLS]"

    def tokenize_and_align_labels(examples):
        tokenized_inputs = tokenizer(examples["tokens"], truncation=True, is_split_into_words=True)
        labels = []
        for i, label in enumerate(examples["ner_tags"]):
            word_ids = tokenized_inputs.word_ids(batch_index=i)  # Map tokens to their respective word.
            previous_word_idx = None
            label_ids = []
            for word_idx in word_ids:  # Set the special tokens to -100.
                if word_idx is None:
                    label_ids.append(-100)
                elif word_idx != previous_word_idx:  # Only label the first token of a given word.
                    label_ids.append(label[word_idx])
                else:
                    label_ids.append(-100)
                previous_word_idx = word_idx
            labels.append(label_ids)
        tokenized_inputs["labels"] = labels
        return tokenized_inputs

    tokenized_wnut = wnut.map(tokenize_and_align_labels, batched=True)
    from triformers import DataCollatorForTokenClassification
    data_collator = DataCollatorForTokenClassification(tokenizer=tokenizer)
    seqeval = Seqeval()  # evaluate.load("seqeval")

    def compute_metrics(p):
        predictions, labels = p
        predictions = np.argmax(predictions, axis=2)
        true_predictions = [[label_list[p] for (p, lab) in zip(prediction, label) if lab != -100]  # noqa: B905
                            for prediction, label in zip(predictions, labels)]  # noqa: B905
        true_labels = [[label_list[lab] for (p, lab) in zip(prediction, label) if lab != -100]  # noqa: B905
                       for prediction, label in zip(predictions, labels)]  # noqa: B905
        results = seqeval.compute(predictions=true_predictions, references=true_labels)
        return {"precision": results["overall_precision"], "recall": results["overall_recall"],
                "f1": results["overall_f1"], "accuracy": results["overall_accuracy"]}

    id2label = dict(enumerate(label_list))
    label2id = {name: i for i, name in id2label.items()}
    from triformers import AutoModelForTokenClassification, Trainer, TrainingArguments
    model = AutoModelForTokenClassification.from_pretrained(checkpoint, num_labels=13, id2label=id2label,
                                                            label2id=label2id)
    training_args = TrainingArguments(output_dir="my_awesome_wnut_model", learning_rate=2e-5,
                                      per_device_train_batch_size=16, per_device_eval_batch_size=16, num_train_epochs=2,
                                      weight_decay=0.01, eval_strategy="epoch", save_strategy="epoch",
                                      load_best_model_at_end=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=tokenized_wnut["train"],
                      eval_dataset=tokenized_wnut["test"], processing_class=tokenizer, data_collator=data_collator,
                      compute_metrics=compute_metrics)
    trainer.train()
    # ---- what it did
    last = [r for r in trainer.state.log_history if "eval_loss" in r][-1]
    assert {"eval_precision", "eval_recall", "eval_f1", "eval_accuracy"} <= set(last)
    predictions = trainer.predict(tokenized_wnut["test"]).predictions
    assert predictions.shape[0] == 16 and predictions.shape[2] == 13  # batches padded to one length with -100


def test_extractive_question_answering_course_preprocessing(tmp_path):
    """The course's (and run_qa.py's) training features: long contexts cut into overlapping windows."""
    rng = random.Random(5)
    rows = []
    for i in range(12):
        before, answer, after = sentence(rng, rng.randint(20, 60)), "Anna Smith", sentence(rng, 10)
        context = f"{before} {answer} {after}"
        rows.append({"id": str(i), "title": "t", "context": context, "question": "who is it ?",
                     "answers": {"text": [answer], "answer_start": [len(before) + 1]}})
    write_jsonl(tmp_path / "squad.jsonl", rows)
    checkpoint = tiny_bert(tmp_path / "tiny-bert-base", head="BertForMaskedLM")
    # ---- the course
    raw_datasets = load_dataset("json", data_files={"train": "squad.jsonl", "validation": "squad.jsonl"})
    from triformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    max_length, stride = 48, 16

    def preprocess_training_examples(examples):
        questions = [q.strip() for q in examples["question"]]
        inputs = tokenizer(questions, examples["context"], max_length=max_length, truncation="only_second",
                           stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                           padding="max_length")
        offset_mapping = inputs.pop("offset_mapping")
        sample_map = inputs.pop("overflow_to_sample_mapping")
        answers = examples["answers"]
        start_positions, end_positions = [], []
        for i, offset in enumerate(offset_mapping):
            answer = answers[sample_map[i]]
            start_char = answer["answer_start"][0]
            end_char = answer["answer_start"][0] + len(answer["text"][0])
            sequence_ids = inputs.sequence_ids(i)
            idx = 0
            while sequence_ids[idx] != 1:
                idx += 1
            context_start = idx
            while sequence_ids[idx] == 1:
                idx += 1
            context_end = idx - 1
            if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
                start_positions.append(0)
                end_positions.append(0)
            else:
                idx = context_start
                while idx <= context_end and offset[idx][0] <= start_char:
                    idx += 1
                start_positions.append(idx - 1)
                idx = context_end
                while idx >= context_start and offset[idx][1] >= end_char:
                    idx -= 1
                end_positions.append(idx + 1)
        inputs["start_positions"] = start_positions
        inputs["end_positions"] = end_positions
        return inputs

    train_dataset = raw_datasets["train"].map(preprocess_training_examples, batched=True,
                                              remove_columns=raw_datasets["train"].column_names)
    assert len(train_dataset) > len(raw_datasets["train"])  # long contexts became several windows
    from triformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint)
    args = TrainingArguments("bert-finetuned-squad", eval_strategy="no", save_strategy="epoch", learning_rate=2e-5,
                             num_train_epochs=3, weight_decay=0.01)
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer)
    trainer.train()
    start_logits, end_logits = trainer.predict(train_dataset).predictions
    assert start_logits.shape == end_logits.shape == (len(train_dataset), max_length)
