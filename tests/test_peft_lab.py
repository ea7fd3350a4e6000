"""The course's Lab 2, PEFT section (Ryota-Kawamura/Generative-AI-with-LLMs,
Week-2/Lab_2_fine_tune_generative_ai_model.ipynb, 3.1 - 3.4), cell after cell, with `peft` replaced by
`triformers.peft` and `transformers` by `triformers` in the import lines and nothing else changed, against the tiny
flan-T5 in an offline Hugging Face cache under the id google/flan-t5-base (the world of test_trainer_lab.py).

Stand-ins: the lab's data preparation (its sections 1.2 and 2.1) runs as there; the S3 download of a fully trained
adapter (`peft-dialogue-summary-checkpoint-from-s3`) is the adapter this run trained and saved; `evaluate.load(
"rouge")` is rouge-score behind the same `.compute`. `GenerationConfig` comes from another branch: until
`from triformers import GenerationConfig` works, the test is an expected failure at the first cell that uses it.
"""

from __future__ import annotations

import pytest
from trainer_assets import Rouge, course_lab

datasets = pytest.importorskip("datasets")


def test_lab2_peft(tmp_path, monkeypatch, capsys):
    lab = course_lab(tmp_path, monkeypatch)
    # ---- 1.1 - 2.1: imports, data, model, tokenized data (as the lab, GenerationConfig apart until it exists)
    import time

    import numpy as np
    import pandas as pd
    import torch
    from datasets import load_dataset

    from triformers import AutoModelForSeq2SeqLM, AutoTokenizer, Trainer, TrainingArguments
    try:
        from triformers import GenerationConfig
    except ImportError:
        GenerationConfig = None
    dataset = load_dataset("csv", data_files=lab)  # load_dataset("knkarthick/dialogsum")
    model_name = 'google/flan-t5-base'
    original_model = AutoModelForSeq2SeqLM.from_pretrained(model_name, torch_dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(model_name)

    def print_number_of_trainable_model_parameters(model):
        trainable_model_params = 0
        all_model_params = 0
        for _, param in model.named_parameters():
            all_model_params += param.numel()
            if param.requires_grad:
                trainable_model_params += param.numel()
        return (f"trainable model parameters: {trainable_model_params}\nall model parameters: {all_model_params}\n"
                f"percentage of trainable model parameters: {100 * trainable_model_params / all_model_params:.2f}%")

    def tokenize_function(example):
        start_prompt = 'Summarize the following conversation.\n\n'
        end_prompt = '\n\nSummary: '
        prompt = [start_prompt + dialogue + end_prompt for dialogue in example["dialogue"]]
        example['input_ids'] = tokenizer(prompt, padding="max_length", truncation=True, return_tensors="pt").input_ids
        example['labels'] = tokenizer(example["summary"], padding="max_length", truncation=True,
                                      return_tensors="pt").input_ids
        return example

    tokenized_datasets = dataset.map(tokenize_function, batched=True)
    tokenized_datasets = tokenized_datasets.remove_columns(['id', 'topic', 'dialogue', 'summary',])
    tokenized_datasets = tokenized_datasets.filter(lambda example, index: index % 100 == 0, with_indices=True)
    base_parameters = original_model.num_parameters()
    # ---- 3.1: the LoRA model
    from triformers.peft import LoraConfig, TaskType, get_peft_model

    lora_config = LoraConfig(
        r=32,  # Rank
        lora_alpha=32,
        target_modules=["q", "v"],
        lora_dropout=0.05,
        bias="none",
        task_type=TaskType.SEQ_2_SEQ_LM  # FLAN-T5
    )
    peft_model = get_peft_model(original_model,
                                lora_config)
    print(print_number_of_trainable_model_parameters(peft_model))
    # the tiny flan-T5: 12 attention modules with q and v (encoder self, decoder self and cross, 2 layers each),
    # each an A (32 x 32) and a B (32 x 32): 24,576 (flan-t5-base's 3,538,944: test_peft.py)
    assert "trainable model parameters: 24576\n" f"all model parameters: {base_parameters + 24576}\n" \
        in capsys.readouterr().out
    # ---- 3.2: train the adapter
    output_dir = f'./peft-dialogue-summary-training-{str(int(time.time()))}'
    peft_training_args = TrainingArguments(
        output_dir=output_dir,
        auto_find_batch_size=True,
        learning_rate=1e-3,  # Higher learning rate than full fine-tuning.
        num_train_epochs=1,
        logging_steps=1,
        max_steps=1
    )
    peft_trainer = Trainer(
        model=peft_model,
        args=peft_training_args,
        train_dataset=tokenized_datasets["train"],
    )
    lora_B = peft_model.base_model.model.encoder.layers[0].attn.qkv.lora_B["default"]["q"]
    assert not lora_B.any()
    peft_trainer.train()
    assert lora_B.any()  # the step moved the adapter
    peft_model_path = "./peft-dialogue-summary-checkpoint-local"
    peft_trainer.model.save_pretrained(peft_model_path)
    tokenizer.save_pretrained(peft_model_path)
    from pathlib import Path

    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in Path(peft_model_path).iterdir()}
    assert not (Path(output_dir) / "model.safetensors").exists()  # the Trainer's export is the adapter alone
    assert (Path(output_dir) / "adapter_model.safetensors").is_file()
    # (the lab downloads a fully trained adapter from S3 here: this run's stands in for it)
    from triformers.peft import PeftConfig, PeftModel  # noqa: F401  (the lab's import line)

    peft_model_base = AutoModelForSeq2SeqLM.from_pretrained("google/flan-t5-base", torch_dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained("google/flan-t5-base")
    peft_model = PeftModel.from_pretrained(peft_model_base,
                                           './peft-dialogue-summary-checkpoint-local/',
                                           torch_dtype=torch.bfloat16,
                                           is_trainable=False)
    print(print_number_of_trainable_model_parameters(peft_model))
    assert "trainable model parameters: 0\n" in capsys.readouterr().out
    # ---- 3.3: qualitative evaluation
    index = 200
    dialogue = dataset['test'][index]['dialogue']
    human_baseline_summary = dataset['test'][index]['summary']
    prompt = f"""
Summarize the following conversation.

{dialogue}

Summary: """
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    if GenerationConfig is None:
        pytest.xfail("triformers has no GenerationConfig yet (another branch adds it); everything before ran")
    instruct_model = original_model  # the lab's fully fine-tuned model of section 2 (here: the base with the adapter)
    original_model_outputs = original_model.generate(input_ids=input_ids,
                                                     generation_config=GenerationConfig(max_new_tokens=200,
                                                                                        num_beams=1))
    original_model_text_output = tokenizer.decode(original_model_outputs[0], skip_special_tokens=True)
    peft_model_outputs = peft_model.generate(input_ids=input_ids,
                                             generation_config=GenerationConfig(max_new_tokens=200, num_beams=1))
    peft_model_text_output = tokenizer.decode(peft_model_outputs[0], skip_special_tokens=True)
    dash_line = '-'.join('' for x in range(100))
    print(dash_line)
    print(f'BASELINE HUMAN SUMMARY:\n{human_baseline_summary}')
    print(dash_line)
    print(f'ORIGINAL MODEL:\n{original_model_text_output}')
    print(dash_line)
    print(f'PEFT MODEL: {peft_model_text_output}')
    # ---- 3.4: ROUGE over 10 dialogues
    dialogues = dataset['test'][0:10]['dialogue']
    human_baseline_summaries = dataset['test'][0:10]['summary']
    instruct_model_summaries, peft_model_summaries = [], []
    for _, dialogue in enumerate(dialogues):
        prompt = f"""
Summarize the following conversation.

{dialogue}

Summary: """
        input_ids = tokenizer(prompt, return_tensors="pt").input_ids
        instruct_model_outputs = instruct_model.generate(input_ids=input_ids,
                                                         generation_config=GenerationConfig(max_new_tokens=200))
        instruct_model_summaries.append(tokenizer.decode(instruct_model_outputs[0], skip_special_tokens=True))
        peft_model_outputs = peft_model.generate(input_ids=input_ids,
                                                 generation_config=GenerationConfig(max_new_tokens=200))
        peft_model_summaries.append(tokenizer.decode(peft_model_outputs[0], skip_special_tokens=True))
    zipped_summaries = list(zip(human_baseline_summaries, instruct_model_summaries, peft_model_summaries))  # noqa: B905
    df = pd.DataFrame(zipped_summaries, columns=['human_baseline_summaries', 'instruct_model_summaries',
                                                 'peft_model_summaries'])
    rouge = Rouge()  # evaluate.load('rouge')
    peft_model_results = rouge.compute(
        predictions=peft_model_summaries,
        references=human_baseline_summaries[0:len(peft_model_summaries)],
        use_aggregator=True,
        use_stemmer=True,
    )
    print('PEFT MODEL:')
    print(peft_model_results)
    improvement = np.array(list(peft_model_results.values()))
    assert len(df) == 10 and set(peft_model_results) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert np.isfinite(improvement).all()
