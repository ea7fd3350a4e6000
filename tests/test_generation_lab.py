"""The course's Lab 1, every prompting section (Ryota-Kawamura/Generative-AI-with-LLMs,
Week-1/Lab_1_summarize_dialogue.ipynb), cell after cell, with `transformers` replaced by `triformers` in the
import lines and nothing else changed, against a tiny flan-T5 (T5 v1.1 layout) in an offline Hugging Face cache
under the id google/flan-t5-base and a DialogSum-shaped CSV loaded with the real `datasets`.

Stand-in where the lab reaches the network: `load_dataset("knkarthick/dialogsum")` is `load_dataset("csv",
data_files=...)`. Section 5's exercise runs each of its GenerationConfig lines (the four commented ones
uncommented, as the exercise asks). The harness (not the lab) counts the generate calls, seeds each one, and
replays every call on transformers' own model from the same cache: the ids must be the same, sampling included.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from trainer_assets import course_lab

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
LAB_CALLS = 13  # 2 + 2 + 2 generate calls in sections 2-3, one shot, few shot, five GenerationConfig lines


@pytest.fixture
def lab(tmp_path, monkeypatch):
    files = course_lab(tmp_path, monkeypatch)
    calls = []
    real = __import__("triformers").EncoderDecoderModel.generate

    def recorded(self, *args, **kwargs):
        torch.manual_seed(len(calls))  # the harness seeds each call, so that its replay draws the same samples
        out = real(self, *args, **kwargs)
        calls.append((args, kwargs, out))
        return out

    monkeypatch.setattr(__import__("triformers").EncoderDecoderModel, "generate", recorded)
    return files, calls


def _replay(calls) -> None:
    """Every recorded call, on transformers' flan-t5-base from the same cache snapshot, with the same seed
    (huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE once, at its import, so the snapshot is named)."""
    snapshot = next((Path(os.environ["HF_HUB_CACHE"]) / "models--google--flan-t5-base" / "snapshots").iterdir())
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(snapshot).eval()
    for index, (args, kwargs, out) in enumerate(calls):
        if "generation_config" in kwargs:
            kwargs = {**kwargs, "generation_config": transformers.GenerationConfig(
                **kwargs["generation_config"].to_diff_dict())}
        torch.manual_seed(index)
        assert torch.equal(model.generate(*args, **kwargs), out), f"generate call {index + 1}"


def test_lab1_prompting_sections(lab, capsys):
    files, calls = lab
    # ---- the imports
    from datasets import load_dataset

    from triformers import AutoModelForSeq2SeqLM
    from triformers import AutoTokenizer
    from triformers import GenerationConfig
    # ---- 2: summarize dialogue without prompt engineering
    dataset = load_dataset("csv", data_files=files)  # load_dataset(huggingface_dataset_name)
    example_indices = [40, 200]
    dash_line = '-'.join('' for x in range(100))
    for i, index in enumerate(example_indices):
        print(dash_line)
        print('Example ', i + 1)
        print(dash_line)
        print('INPUT DIALOGUE:')
        print(dataset['test'][index]['dialogue'])
        print(dash_line)
        print('BASELINE HUMAN SUMMARY:')
        print(dataset['test'][index]['summary'])
        print(dash_line)
        print()
    model_name = 'google/flan-t5-base'
    model = AutoModelForSeq2SeqLM.from_pretrained(model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_name, use_fast=True)
    sentence = "What time is it, Tom?"
    sentence_encoded = tokenizer(sentence, return_tensors='pt')
    sentence_decoded = tokenizer.decode(
            sentence_encoded["input_ids"][0],
            skip_special_tokens=True
        )
    print('ENCODED SENTENCE:')
    print(sentence_encoded["input_ids"][0])
    print('\nDECODED SENTENCE:')
    print(sentence_decoded)
    for i, index in enumerate(example_indices):
        dialogue = dataset['test'][index]['dialogue']
        summary = dataset['test'][index]['summary']

        inputs = tokenizer(dialogue, return_tensors='pt')
        output = tokenizer.decode(
            model.generate(
                inputs["input_ids"],
                max_new_tokens=50,
            )[0],
            skip_special_tokens=True
        )

        print(dash_line)
        print('Example ', i + 1)
        print(dash_line)
        print(f'INPUT PROMPT:\n{dialogue}')
        print(dash_line)
        print(f'BASELINE HUMAN SUMMARY:\n{summary}')
        print(dash_line)
        print(f'MODEL GENERATION - WITHOUT PROMPT ENGINEERING:\n{output}\n')
    # ---- 3.1: zero shot inference with an instruction prompt
    for i, index in enumerate(example_indices):
        dialogue = dataset['test'][index]['dialogue']
        summary = dataset['test'][index]['summary']

        prompt = f"""
Summarize the following conversation.

{dialogue}

Summary:
    """

        # Input constructed prompt instead of the dialogue.
        inputs = tokenizer(prompt, return_tensors='pt')
        output = tokenizer.decode(
            model.generate(
                inputs["input_ids"],
                max_new_tokens=50,
            )[0],
            skip_special_tokens=True
        )

        print(dash_line)
        print('Example ', i + 1)
        print(dash_line)
        print(f'INPUT PROMPT:\n{prompt}')
        print(dash_line)
        print(f'BASELINE HUMAN SUMMARY:\n{summary}')
        print(dash_line)
        print(f'MODEL GENERATION - ZERO SHOT:\n{output}\n')
    # ---- 3.2: zero shot inference with the prompt template from FLAN-T5
    for i, index in enumerate(example_indices):
        dialogue = dataset['test'][index]['dialogue']
        summary = dataset['test'][index]['summary']

        prompt = f"""
Dialogue:

{dialogue}

What was going on?
"""

        inputs = tokenizer(prompt, return_tensors='pt')
        output = tokenizer.decode(
            model.generate(
                inputs["input_ids"],
                max_new_tokens=50,
            )[0],
            skip_special_tokens=True
        )

        print(dash_line)
        print('Example ', i + 1)
        print(dash_line)
        print(f'INPUT PROMPT:\n{prompt}')
        print(dash_line)
        print(f'BASELINE HUMAN SUMMARY:\n{summary}\n')
        print(dash_line)
        print(f'MODEL GENERATION - ZERO SHOT:\n{output}\n')

    # ---- 4.1: one shot inference
    def make_prompt(example_indices_full, example_index_to_summarize):
        prompt = ''
        for index in example_indices_full:
            dialogue = dataset['test'][index]['dialogue']
            summary = dataset['test'][index]['summary']

            # The stop sequence '{summary}\n\n\n' is important for FLAN-T5. Other models may have their own preferred stop sequence.  # noqa: E501
            prompt += f"""
Dialogue:

{dialogue}

What was going on?
{summary}


"""

        dialogue = dataset['test'][example_index_to_summarize]['dialogue']

        prompt += f"""
Dialogue:

{dialogue}

What was going on?
"""

        return prompt

    example_indices_full = [40]
    example_index_to_summarize = 200
    one_shot_prompt = make_prompt(example_indices_full, example_index_to_summarize)
    print(one_shot_prompt)
    summary = dataset['test'][example_index_to_summarize]['summary']
    inputs = tokenizer(one_shot_prompt, return_tensors='pt')
    output = tokenizer.decode(
        model.generate(
            inputs["input_ids"],
            max_new_tokens=50,
        )[0],
        skip_special_tokens=True
    )
    print(dash_line)
    print(f'BASELINE HUMAN SUMMARY:\n{summary}\n')
    print(dash_line)
    print(f'MODEL GENERATION - ONE SHOT:\n{output}')
    # ---- 4.2: few shot inference
    example_indices_full = [40, 80, 120]
    example_index_to_summarize = 200
    few_shot_prompt = make_prompt(example_indices_full, example_index_to_summarize)
    print(few_shot_prompt)
    summary = dataset['test'][example_index_to_summarize]['summary']
    inputs = tokenizer(few_shot_prompt, return_tensors='pt')
    output = tokenizer.decode(
        model.generate(
            inputs["input_ids"],
            max_new_tokens=50,
        )[0],
        skip_special_tokens=True
    )
    print(dash_line)
    print(f'BASELINE HUMAN SUMMARY:\n{summary}\n')
    print(dash_line)
    print(f'MODEL GENERATION - FEW SHOT:\n{output}')
    # ---- 5: generative configuration parameters for inference (each line of the exercise)
    for generation_config in (GenerationConfig(max_new_tokens=50),
                              GenerationConfig(max_new_tokens=10),
                              GenerationConfig(max_new_tokens=50, do_sample=True, temperature=0.1),
                              GenerationConfig(max_new_tokens=50, do_sample=True, temperature=0.5),
                              GenerationConfig(max_new_tokens=50, do_sample=True, temperature=1.0)):
        inputs = tokenizer(few_shot_prompt, return_tensors='pt')
        output = tokenizer.decode(
            model.generate(
                inputs["input_ids"],
                generation_config=generation_config,
            )[0],
            skip_special_tokens=True
        )

        print(dash_line)
        print(f'MODEL GENERATION - FEW SHOT:\n{output}')
        print(dash_line)
        print(f'BASELINE HUMAN SUMMARY:\n{summary}\n')
    # ---- what it did
    assert len(calls) == LAB_CALLS
    limits = [50] * 9 + [10, 50, 50, 50]  # max_new_tokens of each call (+ the decoder start token)
    assert all(out.shape[1] <= limit + 1 for (_, _, out), limit in zip(calls, limits, strict=True))
    assert calls[-4][2].shape[1] <= 11
    assert not torch.equal(calls[-1][2], calls[-5][2])  # temperature 1.0 sampled, not the greedy summary
    assert "MODEL GENERATION - FEW SHOT" in capsys.readouterr().out
    _replay(calls)
