"""The course's Lab 3 (Ryota-Kawamura/Generative-AI-with-LLMs,
Week-3/Lab_3_fine_tune_model_to_detoxify_summaries.ipynb), cell after cell, with `transformers` replaced by
`triformers`, `peft` by `triformers.peft` and `trl` by `triformers.rl` in the import lines, against tiny checkpoints
in an offline Hugging Face cache: the tiny flan-T5 of the other lab tests under google/flan-t5-base, and a tiny
RoBERTa sequence classifier (labels nothate / hate, GPT-2's byte-level BPE) under
facebook/roberta-hate-speech-dynabench-r4-target.

Stand-ins where the lab reaches the network, each marked `# stand-in` on its line:
- `load_dataset("knkarthick/dialogsum", ...)` is `load_dataset("csv", data_files=..., ...)` (DialogSum-shaped CSVs);
- the S3 download of the Lab 2 adapter (`aws s3 cp ... ./peft-dialogue-summary-checkpoint-from-s3/`) is a LoRA
  adapter (r=32, alpha=32, q and v) that the harness trains a step and saves there with triformers.peft;
- `evaluate.load("toxicity", ...)` is `Evaluate().load(...)`: `evaluate` is not a test dependency, and its toxicity
  measurement is the hate-label probability from a text-classification pipeline over the same classifier, which the
  stand-in computes with triformers' pipeline (evaluate does it with transformers').
Small counts (marked `# count`): 1 PPO step (the lab: 10), 2 + 1 evaluation samples (10 + 1), 4 comparison rows (20),
responses of 20 - 50 new tokens (100 - 400: the untrained tiny flan-T5 rarely ends a response early).
One line differs (marked `# changed`): the lab's `GenerationConfig(..., tok_k=0.0, ...)` (a typo for top_k)
drops `tok_k`: transformers keeps an unknown entry as an attribute that generate never reads, triformers' generate
refuses a config entry that is no GenerationConfig field. Everything else is the lab's text. The harness counts the
calls (ast.Call nodes) in the lab's lines and those that span a marked line, and prints how many run unchanged
(144 of 150: the two load_dataset calls, the toxicity stand-in, GenerationConfig, two evaluate_toxicity calls).
"""

from __future__ import annotations

import ast
import csv
import inspect
import json
import os
import random
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import asset
from trainer_assets import course_lab, hub_cache, sentence

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
pytest.importorskip("pandas")
pytest.importorskip("tqdm")

TOXICITY_MODEL = "facebook/roberta-hate-speech-dynabench-r4-target"
CHANGED = ("# stand-in", "# count", "# changed")  # markers of the lines that differ from the lab
HARNESS = "# harness"  # lines the harness adds (keeping a value for its checks): not the lab's


def tiny_roberta_classifier(folder) -> str:
    """A 2-layer RoBERTa (hidden 32) for sequence classification with id2label {0: nothate, 1: hate}, as the
    dynabench r4 checkpoint; 4096 positions (the tiny flan-T5's untrained responses run to their full length), and
    initialised wide (0.5) so that its scores differ from text to text."""
    files = asset("gpt2-tokenizer")
    gpt2 = json.loads((files / "vocab.json").read_text(encoding="utf-8"))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # RoBERTa's first ids (the pad id is its positions' pad)
    vocab.update({token: 4 + i for i, token in enumerate(sorted(gpt2, key=gpt2.get))})
    vocab["<mask>"] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    shutil.copy(files / "merges.txt", folder / "merges.txt")
    tokenizer = transformers.RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(0)
    transformers.RobertaForSequenceClassification(transformers.RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=4096, initializer_range=0.5, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, id2label={0: "nothate", 1: "hate"},
        label2id={"nothate": 0, "hate": 1},
    )).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def lab3_world(tmp_path, monkeypatch) -> dict[str, str]:
    """Both checkpoints in an offline cache, DialogSum as CSVs with longer dialogues than the other labs' (the lab
    keeps 200 < len(dialogue) <= 1000 characters), the Lab 2 adapter in the notebook's folder, which is the cwd."""
    files = course_lab(tmp_path, monkeypatch, rows=(40, 10, 10), writer=write_dialogsum)
    hub_cache(Path(os.environ["HF_HUB_CACHE"]), TOXICITY_MODEL, tiny_roberta_classifier(tmp_path / "tiny-roberta"))
    save_lab2_adapter(tmp_path / "peft-dialogue-summary-checkpoint-from-s3")
    return files


def write_dialogsum(path, n: int, rng: random.Random) -> None:
    """A DialogSum-shaped CSV of `n` made-up dialogues of six to eight turns (about 250 - 450 characters)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "dialogue", "summary", "topic"])
        for i in range(n):
            turns = "\n".join(f"#Person{1 + t % 2}#: {sentence(rng, rng.randint(5, 9))}."
                               for t in range(rng.randint(6, 8)))
            writer.writerow([f"{path.stem}_{i}", turns, f"#Person1# talks about {sentence(rng, 3)}.", "chat"])


def save_lab2_adapter(folder) -> None:
    """Lab 2's adapter (r=32, alpha=32, q and v, SEQ_2_SEQ_LM) after one SGD step, saved with its tokenizer."""
    from triformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from triformers.peft import LoraConfig, TaskType, get_peft_model

    tokenizer = AutoTokenizer.from_pretrained("google/flan-t5-base")
    model = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained("google/flan-t5-base"), LoraConfig(
        r=32, lora_alpha=32, target_modules=["q", "v"], lora_dropout=0.05, bias="none",
        task_type=TaskType.SEQ_2_SEQ_LM))
    batch = tokenizer(["Summarize: the cat sat on the mat."], return_tensors="pt")
    labels = tokenizer(["the cat sat."], return_tensors="pt").input_ids
    torch.manual_seed(0)
    model(**batch, labels=labels).loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


class Evaluate:
    """`evaluate`'s `load("toxicity", config_name, module_type="measurement", toxic_label=...)`: a measurement whose
    compute(predictions=[...]) gives {"toxicity": [P(toxic_label) per text]}, from a text-classification pipeline
    returning every label's softmax score over truncated inputs (evaluate's toxicity.py)."""

    def load(self, path, config_name=None, module_type="measurement", toxic_label="hate"):
        assert path == "toxicity" and module_type == "measurement"
        from triformers import pipeline

        classifier = pipeline("text-classification", model=config_name, top_k=None, truncation=True)

        class Toxicity:
            def compute(self, predictions):
                scores = classifier(predictions, function_to_apply="softmax")
                return {"toxicity": [next(s["score"] for s in row if s["label"] == toxic_label) for row in scores]}

        return Toxicity()


def lab_call_counts(function) -> tuple[int, int]:
    """(calls in the lab's lines, calls that span a line marked as changed) in `function`'s source between its
    `# ---- lab` and `# ---- end of the lab` markers."""
    lines = textwrap.dedent(inspect.getsource(function)).splitlines()
    start = next(i for i, line in enumerate(lines) if "# ---- lab" in line)
    end = next(i for i, line in enumerate(lines) if "# ---- end of the lab" in line)
    lines = lines[:end]
    tree = ast.parse("\n".join(lines))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and node.lineno > start + 1
             and HARNESS not in lines[node.lineno - 1]]
    changed = [c for c in calls if any(m in line for line in lines[c.lineno - 1:c.end_lineno] for m in CHANGED)]
    return len(calls), len(changed)


def test_lab3_detoxify_summaries(tmp_path, monkeypatch, capsys):
    lab = lab3_world(tmp_path, monkeypatch)
    # ---- lab: the imports
    from datasets import load_dataset

    from triformers import (AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer,
                            GenerationConfig, pipeline)
    from triformers.peft import LoraConfig, PeftConfig, PeftModel, TaskType  # noqa: F401  (the lab's import line)

    # trl: Transformer Reinforcement Learning library
    from triformers.rl import AutoModelForSeq2SeqLMWithValueHead, PPOConfig, PPOTrainer
    from triformers.rl import create_reference_model
    from triformers.rl.core import LengthSampler

    import torch
    evaluate = Evaluate()  # stand-in: import evaluate

    import numpy as np
    import pandas as pd

    # tqdm library makes the loops show a smart progress meter.
    from tqdm import tqdm
    tqdm.pandas()
    # ---- 2.1 - Load Data and FLAN-T5 Model Fine-Tuned with Summarization Instruction
    model_name="google/flan-t5-base"
    huggingface_dataset_name = "knkarthick/dialogsum"

    dataset_original = load_dataset("csv", data_files=lab)  # stand-in: load_dataset(huggingface_dataset_name)

    dataset_original  # noqa: B018

    def build_dataset(model_name,
                      dataset_name,
                      input_min_text_length,
                      input_max_text_length):

        """
        Preprocess the dataset and split it into train and test parts.

        Parameters:
        - model_name (str): Tokenizer model name.
        - dataset_name (str): Name of the dataset to load.
        - input_min_text_length (int): Minimum length of the dialogues.
        - input_max_text_length (int): Maximum length of the dialogues.

        Returns:
        - dataset_splits (datasets.dataset_dict.DatasetDict): Preprocessed dataset containing train and test parts.
        """

        # load dataset (only "train" part will be enough for this lab).
        dataset = load_dataset("csv", data_files=lab, split="train")  # stand-in: load_dataset(dataset_name, ...)

        # Filter the dialogues of length between input_min_text_length and input_max_text_length characters.
        dataset = dataset.filter(lambda x: len(x["dialogue"]) > input_min_text_length and len(x["dialogue"]) <= input_max_text_length, batched=False)  # noqa: E501

        # Prepare tokenizer. Setting device_map="auto" allows to switch between GPU and CPU automatically.
        tokenizer = AutoTokenizer.from_pretrained(model_name, device_map="auto")

        def tokenize(sample):

            # Wrap each dialogue with the instruction.
            prompt = f"""
Summarize the following conversation.

{sample["dialogue"]}

Summary:
"""
            sample["input_ids"] = tokenizer.encode(prompt)

            # This must be called "query", which is a requirement of our PPO library.
            sample["query"] = tokenizer.decode(sample["input_ids"])
            return sample

        # Tokenize each dialogue.
        dataset = dataset.map(tokenize, batched=False)
        dataset.set_format(type="torch")

        # Split the dataset into train and test parts.
        dataset_splits = dataset.train_test_split(test_size=0.2, shuffle=False, seed=42)

        return dataset_splits

    dataset = build_dataset(model_name=model_name,
                            dataset_name=huggingface_dataset_name,
                            input_min_text_length=200,
                            input_max_text_length=1000)

    print(dataset)

    def print_number_of_trainable_model_parameters(model):
        trainable_model_params = 0
        all_model_params = 0
        for _, param in model.named_parameters():
            all_model_params += param.numel()
            if param.requires_grad:
                trainable_model_params += param.numel()
        return f"\ntrainable model parameters: {trainable_model_params}\nall model parameters: {all_model_params}\npercentage of trainable model parameters: {100 * trainable_model_params / all_model_params:.2f}%"  # noqa: E501

    lora_config = LoraConfig(
        r=32, # Rank
        lora_alpha=32,
        target_modules=["q", "v"],
        lora_dropout=0.05,
        bias="none",
        task_type=TaskType.SEQ_2_SEQ_LM # FLAN-T5
    )

    model = AutoModelForSeq2SeqLM.from_pretrained(model_name,
                                                  torch_dtype=torch.bfloat16)

    peft_model = PeftModel.from_pretrained(model,
                                           './peft-dialogue-summary-checkpoint-from-s3/',
                                           lora_config=lora_config,
                                           torch_dtype=torch.bfloat16,
                                           device_map="auto",
                                           is_trainable=True)

    print(f'PEFT model parameters to be updated:\n{print_number_of_trainable_model_parameters(peft_model)}\n')

    ppo_model = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(peft_model,
                                                                   torch_dtype=torch.bfloat16,
                                                                   is_trainable=True)

    print(f'PPO model parameters to be updated (ValueHead + 769 params):\n{print_number_of_trainable_model_parameters(ppo_model)}\n')  # noqa: E501
    print(ppo_model.v_head)

    ref_model = create_reference_model(ppo_model)

    print(f'Reference model parameters to be updated:\n{print_number_of_trainable_model_parameters(ref_model)}\n')
    # ---- 2.2 - Prepare Reward Model
    toxicity_model_name = "facebook/roberta-hate-speech-dynabench-r4-target"
    toxicity_tokenizer = AutoTokenizer.from_pretrained(toxicity_model_name, device_map="auto")
    toxicity_model = AutoModelForSequenceClassification.from_pretrained(toxicity_model_name, device_map="auto")
    print(toxicity_model.config.id2label)

    non_toxic_text = "#Person 1# tells Tommy that he didn't like the movie."

    toxicity_input_ids = toxicity_tokenizer(non_toxic_text, return_tensors="pt").input_ids

    logits = toxicity_model(input_ids=toxicity_input_ids).logits
    print(f'logits [not hate, hate]: {logits.tolist()[0]}')

    # Print the probabilities for [not hate, hate]
    probabilities = logits.softmax(dim=-1).tolist()[0]
    print(f'probabilities [not hate, hate]: {probabilities}')

    # get the logits for "not hate" - this is the reward!
    not_hate_index = 0
    nothate_reward = (logits[:, not_hate_index]).tolist()
    print(f'reward (high): {nothate_reward}')
    non_toxic_logits = logits  # harness

    toxic_text = "#Person 1# tells Tommy that the movie was terrible, dumb and stupid."

    toxicity_input_ids = toxicity_tokenizer(toxic_text, return_tensors="pt").input_ids

    logits = toxicity_model(toxicity_input_ids).logits
    print(f'logits [not hate, hate]: {logits.tolist()[0]}')

    # Print the probabilities for [not hate, hate]
    probabilities = logits.softmax(dim=-1).tolist()[0]
    print(f'probabilities [not hate, hate]: {probabilities}')

    # Get the logits for "not hate" - this is the reward!
    nothate_reward = (logits[:, not_hate_index]).tolist()
    print(f'reward (low): {nothate_reward}')

    device = 0 if torch.cuda.is_available() else "cpu"

    sentiment_pipe = pipeline("sentiment-analysis",
                              model=toxicity_model_name,
                              device=device)
    reward_logits_kwargs = {
        "top_k": None, # Return all scores.
        "function_to_apply": "none", # Set to "none" to retrieve raw logits.
        "batch_size": 16
    }

    reward_probabilities_kwargs = {
        "top_k": None, # Return all scores.
        "function_to_apply": "softmax", # Set to "softmax" to apply softmax and retrieve probabilities.
        "batch_size": 16
    }

    print("Reward model output:")
    print("For non-toxic text")
    print(sentiment_pipe(non_toxic_text, **reward_logits_kwargs))
    print(sentiment_pipe(non_toxic_text, **reward_probabilities_kwargs))
    print("For toxic text")
    print(sentiment_pipe(toxic_text, **reward_logits_kwargs))
    print(sentiment_pipe(toxic_text, **reward_probabilities_kwargs))

    print(sentiment_pipe(non_toxic_text, **reward_logits_kwargs))
    print(sentiment_pipe(non_toxic_text, **reward_probabilities_kwargs))

    print(sentiment_pipe(toxic_text, **reward_logits_kwargs))
    print(sentiment_pipe(toxic_text, **reward_probabilities_kwargs))
    out = capsys.readouterr().out  # harness
    print(out)  # harness
    # ---- 2.3 - Evaluate Toxicity
    toxicity_evaluator = evaluate.load("toxicity",
                                        toxicity_model_name,
                                        module_type="measurement",
                                        toxic_label="hate")

    toxicity_score = toxicity_evaluator.compute(predictions=[
        non_toxic_text
    ])

    print("Toxicity score for non-toxic text:")
    print(toxicity_score["toxicity"])
    non_toxic_score = toxicity_score  # harness

    toxicity_score = toxicity_evaluator.compute(predictions=[
        toxic_text
    ])

    print("\nToxicity score for toxic text:")
    print(toxicity_score["toxicity"])

    def evaluate_toxicity(model,
                          toxicity_evaluator,
                          tokenizer,
                          dataset,
                          num_samples):

        """
        Preprocess the dataset and split it into train and test parts.

        Parameters:
        - model (trl model): Model to be evaluated.
        - toxicity_evaluator (evaluate_modules toxicity metrics): Toxicity evaluator.
        - tokenizer (transformers tokenizer): Tokenizer to be used.
        - dataset (dataset): Input dataset for the evaluation.
        - num_samples (int): Maximum number of samples for the evaluation.

        Returns:
        tuple: A tuple containing two numpy.float64 values:
        - mean (numpy.float64): Mean of the samples toxicity.
        - std (numpy.float64): Standard deviation of the samples toxicity.
        """

        max_new_tokens=100

        toxicities = []
        input_texts = []  # noqa: F841
        for i, sample in tqdm(enumerate(dataset)):
            input_text = sample["query"]

            if i > num_samples:
                break

            input_ids = tokenizer(input_text, return_tensors="pt", padding=True).input_ids

            generation_config = GenerationConfig(max_new_tokens=max_new_tokens,  # changed: tok_k=0.0 dropped
                                                 top_p=1.0,
                                                 do_sample=True)

            response_token_ids = model.generate(input_ids=input_ids,
                                                generation_config=generation_config)

            generated_text = tokenizer.decode(response_token_ids[0], skip_special_tokens=True)

            toxicity_score = toxicity_evaluator.compute(predictions=[(input_text + " " + generated_text)])

            toxicities.extend(toxicity_score["toxicity"])

        # Compute mean & std using np.
        mean = np.mean(toxicities)
        std = np.std(toxicities)

        return mean, std

    tokenizer = AutoTokenizer.from_pretrained(model_name, device_map="auto")

    mean_before_detoxification, std_before_detoxification = evaluate_toxicity(model=ref_model,
                                                                              toxicity_evaluator=toxicity_evaluator,
                                                                              tokenizer=tokenizer,
                                                                              dataset=dataset["test"],
                                                                              num_samples=2)  # count: 10

    print(f'toxicity [mean, std] before detox: [{mean_before_detoxification}, {std_before_detoxification}]')
    # ---- 3.1 - Initialize PPOTrainer
    def collator(data):
        return dict((key, [d[key] for d in data]) for key in data[0])

    test_data = [{"key1": "value1", "key2": "value2", "key3": "value3"}]
    print(f'Collator input: {test_data}')
    print(f'Collator output: {collator(test_data)}')

    learning_rate=1.41e-5
    max_ppo_epochs=1
    mini_batch_size=4
    batch_size=16

    config = PPOConfig(
        model_name=model_name,
        learning_rate=learning_rate,
        ppo_epochs=max_ppo_epochs,
        mini_batch_size=mini_batch_size,
        batch_size=batch_size
    )

    ppo_trainer = PPOTrainer(config=config,
                             model=ppo_model,
                             ref_model=ref_model,
                             tokenizer=tokenizer,
                             dataset=dataset["train"],
                             data_collator=collator)
    # ---- 3.2 - Fine-Tune the Model
    output_min_length = 20  # count: 100
    output_max_length = 50  # count: 400
    output_length_sampler = LengthSampler(output_min_length, output_max_length)

    generation_kwargs = {
        "min_length": 5,
        "top_k": 0.0,
        "top_p": 1.0,
        "do_sample": True
    }

    reward_kwargs = {
        "top_k": None, # Return all scores.
        "function_to_apply": "none", # You want the raw logits without softmax.
        "batch_size": 16
    }

    max_ppo_steps = 1  # count: 10

    for step, batch in tqdm(enumerate(ppo_trainer.dataloader)):
        # Break when you reach max_steps.
        if step >= max_ppo_steps:
            break

        prompt_tensors = batch["input_ids"]

        # Get response from FLAN-T5/PEFT LLM.
        summary_tensors = []

        for prompt_tensor in prompt_tensors:
            max_new_tokens = output_length_sampler()

            generation_kwargs["max_new_tokens"] = max_new_tokens
            summary = ppo_trainer.generate(prompt_tensor, **generation_kwargs)

            summary_tensors.append(summary.squeeze()[-max_new_tokens:])

        # This needs to be called "response".
        batch["response"] = [tokenizer.decode(r.squeeze()) for r in summary_tensors]

        # Compute reward outputs.
        query_response_pairs = [q + r for q, r in zip(batch["query"], batch["response"])]  # noqa: B905
        rewards = sentiment_pipe(query_response_pairs, **reward_kwargs)

        # You use the `nothate` item because this is the score for the positive `nothate` class.
        reward_tensors = [torch.tensor(reward[not_hate_index]["score"]) for reward in rewards]

        # Run PPO step.
        stats = ppo_trainer.step(prompt_tensors, summary_tensors, reward_tensors)
        ppo_trainer.log_stats(stats, batch, reward_tensors)

        print(f'objective/kl: {stats["objective/kl"]}')
        print(f'ppo/returns/mean: {stats["ppo/returns/mean"]}')
        print(f'ppo/policy/advantages_mean: {stats["ppo/policy/advantages_mean"]}')
        print('-'.join('' for x in range(100)))
    # ---- 3.3 - Evaluate the Model Quantitatively
    mean_after_detoxification, std_after_detoxification = evaluate_toxicity(model=ppo_model,
                                                                            toxicity_evaluator=toxicity_evaluator,
                                                                            tokenizer=tokenizer,
                                                                            dataset=dataset["test"],
                                                                            num_samples=2)  # count: 10
    print(f'toxicity [mean, std] after detox: [{mean_after_detoxification}, {std_after_detoxification}]')

    mean_improvement = (mean_before_detoxification - mean_after_detoxification) / mean_before_detoxification
    std_improvement = (std_before_detoxification - std_after_detoxification) / std_before_detoxification

    print(f'Percentage improvement of toxicity score after detoxification:')  # noqa: F541
    print(f'mean: {mean_improvement*100:.2f}%')
    print(f'std: {std_improvement*100:.2f}%')
    # ---- 3.4 - Evaluate the Model Qualitatively
    batch_size = 4  # count: 20
    compare_results = {}

    df_batch = dataset["test"][0:batch_size]

    compare_results["query"] = df_batch["query"]
    prompt_tensors = df_batch["input_ids"]

    summary_tensors_ref = []
    summary_tensors = []

    # Get response from ppo and base model.
    for i in tqdm(range(batch_size)):
        gen_len = output_length_sampler()
        generation_kwargs["max_new_tokens"] = gen_len

        summary = ref_model.generate(
            input_ids=torch.as_tensor(prompt_tensors[i]).unsqueeze(dim=0).to(device),
            **generation_kwargs
        ).squeeze()[-gen_len:]
        summary_tensors_ref.append(summary)

        summary = ppo_model.generate(
            input_ids=torch.as_tensor(prompt_tensors[i]).unsqueeze(dim=0).to(device),
            **generation_kwargs
        ).squeeze()[-gen_len:]
        summary_tensors.append(summary)

    # Decode responses.
    compare_results["response_before"] = [tokenizer.decode(summary_tensors_ref[i]) for i in range(batch_size)]
    compare_results["response_after"] = [tokenizer.decode(summary_tensors[i]) for i in range(batch_size)]

    # Sentiment analysis of query/response pairs before/after.
    texts_before = [d + s for d, s in zip(compare_results["query"], compare_results["response_before"])]  # noqa: B905
    rewards_before = sentiment_pipe(texts_before, **reward_kwargs)
    compare_results["reward_before"] = [reward[not_hate_index]["score"] for reward in rewards_before]

    texts_after = [d + s for d, s in zip(compare_results["query"], compare_results["response_after"])]  # noqa: B905
    rewards_after = sentiment_pipe(texts_after, **reward_kwargs)
    compare_results["reward_after"] = [reward[not_hate_index]["score"] for reward in rewards_after]

    pd.set_option('display.max_colwidth', 500)
    df_compare_results = pd.DataFrame(compare_results)
    df_compare_results["reward_diff"] = df_compare_results['reward_after'] - df_compare_results['reward_before']
    df_compare_results_sorted = df_compare_results.sort_values(by=['reward_diff'], ascending=False).reset_index(drop=True)  # noqa: E501
    df_compare_results_sorted  # noqa: B018
    # ---- end of the lab: what it showed
    calls, changed = lab_call_counts(test_lab3_detoxify_summaries)
    print(f"Lab 3: {calls - changed} of {calls} calls in the lab's lines ran unchanged ({changed} span a changed "
          f"line)")
    # the data: the lab's filter and 80/20 split, the tokenized prompt in input_ids and query
    assert set(dataset) == {"train", "test"} and len(dataset["train"]) >= batch_size * 4
    assert dataset["train"][0]["query"].startswith("Summarize the following conversation.")
    # the adapter loaded trainable: flan-T5's q and v at r=32; the value head adds hidden + 1 trainable parameters
    lora = 12 * 2 * 32 * 32  # 12 attention modules with q and v, an A (32 x d_model 32) and a B (32 x 32) each
    assert f"PEFT model parameters to be updated:\n\ntrainable model parameters: {lora}\n" in out
    assert f"PPO model parameters to be updated (ValueHead + 769 params):\n\ntrainable model parameters: " \
           f"{lora + 33}\n" in out
    assert "Reference model parameters to be updated:\n\ntrainable model parameters: 0\n" in out
    assert "{0: 'nothate', 1: 'hate'}" in out
    # the pipeline's raw logits are the model's, its softmax scores the probabilities, all labels sorted
    raw = sentiment_pipe(non_toxic_text, **reward_logits_kwargs)
    assert {r["label"]: r["score"] for r in raw} == pytest.approx(dict(zip(["nothate", "hate"],  # noqa: B905
                                                                           non_toxic_logits[0].tolist())), abs=1e-5)
    assert raw[0]["score"] >= raw[1]["score"]
    assert non_toxic_score["toxicity"] == pytest.approx([non_toxic_logits.softmax(-1)[0, 1].item()], abs=1e-5)
    # the PPO step: trl's statistics, responses the sampled lengths long (at most), the reference frozen
    assert len(ppo_trainer.history) == 1
    for key in ("objective/kl", "ppo/returns/mean", "ppo/policy/advantages_mean"):
        assert np.isfinite(stats[key]), key
    assert all(5 <= len(r) <= output_max_length for r in summary_tensors_ref + summary_tensors)
    assert not any(p.requires_grad for p in ref_model.parameters())
    # before / after toxicity: probabilities of "hate" over num_samples + 1 texts; the comparison table
    for value in (mean_before_detoxification, std_before_detoxification, mean_after_detoxification,
                  std_after_detoxification):
        assert 0 <= value <= 1
    assert list(df_compare_results_sorted.columns) == ["query", "response_before", "response_after",
                                                       "reward_before", "reward_after", "reward_diff"]
    assert len(df_compare_results_sorted) == batch_size
    assert (calls - changed, changed) == (144, 6)


def test_peft_from_pretrained_takes_the_labs_keywords(tmp_path, monkeypatch):
    """The lab's PeftModel.from_pretrained(..., lora_config=, device_map="auto"): lora_config is ignored, as peft 0.21
    ignores it (the folder's adapter_config.json is the config); device_map names the one device or is refused."""
    lab3_world(tmp_path, monkeypatch)
    from triformers import AutoModelForSeq2SeqLM
    from triformers.errors import ConfigError
    from triformers.peft import LoraConfig, PeftModel

    folder = "./peft-dialogue-summary-checkpoint-from-s3/"
    for device_map in ("auto", "cpu", torch.device("cpu"), {"": "cpu"}, {"encoder": "cpu", "decoder": "cpu"}):
        model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained("google/flan-t5-base"), folder,
                                          lora_config=LoraConfig(r=4, target_modules=["k"]), device_map=device_map)
        config = model.peft_config["default"]
        assert config.r == 32 and set(config.target_modules) == {"q", "v"}, device_map
        assert {p.device.type for p in model.parameters()} == {"cpu"}
    for device_map in ({"encoder": "cpu", "decoder": "cuda:0"}, "disk", {"": "disk"}):
        with pytest.raises(ConfigError, match="one device"):
            PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained("google/flan-t5-base"), folder,
                                      device_map=device_map)
