"""Training LoRA adapters with the Trainer: it learns (a LoRA fine-tune reaches full fine-tuning's loss, also over an
int8 base), checkpoints and exports the adapter alone, and resumes to the same result as an uninterrupted run."""

from __future__ import annotations

import copy

import pytest
import torch

import triformers
from triformers import Trainer, TrainingArguments
from triformers.layers import onednn
from triformers.layers.int8 import quantize_int8
from triformers.peft import LoraConfig, PeftModel, get_peft_model
from triformers.training.checkpoints import latest_checkpoint, read_state

VOCAB, LENGTH = 24, 16


def progressions(step: int, n: int, seed: int) -> list[dict]:
    """Sequences counting mod VOCAB by `step` from a random start: each token follows from the one before."""
    start = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(seed))
    ids = (start + step * torch.arange(LENGTH)) % VOCAB
    return [{"input_ids": row, "labels": row} for row in ids]


def train(model, data, tmp_path, learning_rate: float, steps: int, **more) -> Trainer:
    settings = dict(output_dir=str(tmp_path), learning_rate=learning_rate, max_steps=steps,
                    per_device_train_batch_size=16, logging_steps=steps, save_strategy="no",
                    lr_scheduler_type="constant", weight_decay=0.0, disable_tqdm=True)
    args = TrainingArguments(**{**settings, **more})
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    return trainer


def held_out_loss(model, data) -> float:
    model.eval()
    ids = torch.stack([row["input_ids"] for row in data])
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny GPT-2 trained on counting by 1: the 'pre-trained' model the tasks below fine-tune."""
    torch.manual_seed(0)
    config = triformers.dialects.get_dialect("gpt2").config_from_hf(
        dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=LENGTH, resid_pdrop=0.0, embd_pdrop=0.0,
             attn_pdrop=0.0), "tiny counting GPT-2")
    model = triformers.DecoderModel.from_config(config, head="lm")
    train(model, progressions(1, 512, 0), tmp_path_factory.mktemp("pretrain"), 3e-3, 120)
    return model


def test_lora_reaches_full_fine_tuning(pretrained, tmp_path):
    """Counting by 3 instead of 1, 40 steps each: full fine-tuning (lr 1e-3) and LoRA r=8 on all linear layers
    (lr 1e-2, the course's tenfold) both go from ~7.7 to below 0.5; LoRA ends within 0.1 of full fine-tuning's
    held-out loss, and so does LoRA over the int8-quantized base."""
    task, held_out = progressions(3, 512, 1), progressions(3, 128, 99)
    start = held_out_loss(pretrained, held_out)
    full = copy.deepcopy(pretrained)
    train(full, task, tmp_path / "full", 1e-3, 40)
    lora = get_peft_model(copy.deepcopy(pretrained), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    train(lora, task, tmp_path / "lora", 1e-2, 40)
    quantized = get_peft_model(quantize_int8(copy.deepcopy(pretrained)),
                               LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    train(quantized, task, tmp_path / "int8", 1e-2, 40)
    losses = {name: held_out_loss(m, held_out) for name, m in (("full", full), ("lora", lora), ("int8", quantized))}
    print(f"held-out loss: before {start:.4f}, " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    assert start > 5 and losses["full"] < 0.5, (start, losses)
    assert losses["lora"] < losses["full"] + 0.1 and losses["int8"] < losses["full"] + 0.1, losses


def test_trainer_checkpoints_and_exports_the_adapter_and_resumes_exactly(pretrained, tmp_path):
    task = progressions(3, 256, 2)

    def lora():
        torch.manual_seed(0)
        return get_peft_model(copy.deepcopy(pretrained), LoraConfig(r=4, target_modules=["c_attn"], lora_dropout=0.1))

    straight = train(lora(), task, tmp_path / "a", 5e-3, 6, save_strategy="steps", save_steps=3, logging_steps=1)
    checkpoint = latest_checkpoint(tmp_path / "a")
    state = read_state(checkpoint / "trainer_state.pt")["model"]
    assert state and all("lora_" in key for key in state)  # the adapters alone, no base weights
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    assert (tmp_path / "a" / "adapter_config.json").is_file()
    interrupted = lora()
    args = TrainingArguments(output_dir=str(tmp_path / "b"), learning_rate=5e-3, max_steps=3,
                             per_device_train_batch_size=16, logging_steps=1, save_strategy="steps", save_steps=3,
                             lr_scheduler_type="constant", weight_decay=0.0, disable_tqdm=True)
    Trainer(model=interrupted, args=args, train_dataset=task).train()
    resumed = lora()
    args = TrainingArguments(**{**args.__dict__, "max_steps": 6})
    trainer = Trainer(model=resumed, args=args, train_dataset=task)
    trainer.train(resume_from_checkpoint=True)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses == [r["loss"] for r in straight.state.log_history if "loss" in r]
    ours = resumed.base_model.model.decoder.layers[1].attn.qkv.lora_B["default"]["c_attn"]
    theirs = straight.model.base_model.model.decoder.layers[1].attn.qkv.lora_B["default"]["c_attn"]
    assert torch.equal(ours, theirs)
    reloaded = PeftModel.from_pretrained(copy.deepcopy(pretrained), tmp_path / "a")  # the exported adapter
    held_out = progressions(3, 32, 3)
    assert held_out_loss(reloaded, held_out) == pytest.approx(held_out_loss(straight.model, held_out), abs=1e-6)



@pytest.mark.skipif(not onednn.AVAILABLE, reason="this torch build has no oneDNN (mkldnn)")
def test_a_lora_step_keeps_no_input_of_a_frozen_layer(pretrained):
    """LoRA on c_attn alone: every other linear layer is frozen, so backward needs their inputs for nothing (there is
    no grad_W to compute): none of the linear layers that backward passes through keeps its input (c_attn's base
    neither: the adapter keeps its own dropped copy), and the gradient still reaches the first layer's adapter (its
    B; A's gradient is zero while B is at its zero init)."""
    model = get_peft_model(copy.deepcopy(pretrained), LoraConfig(r=4, target_modules=["c_attn"], lora_dropout=0.1))
    model.train()
    ids = torch.stack([row["input_ids"] for row in progressions(3, 4, 5)])
    loss = model(input_ids=ids, labels=ids).loss
    linears, heads, stack, seen = [], [], [loss.grad_fn], set()
    while stack:  # the autograd graph, from the loss down
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name() == "OneDNNLinearBackward":
            linears.append(node)
        heads += [node] if node.name() == "_LinearCrossEntropyBackward" else []
        stack += [f for f, _ in node.next_functions]
    assert len(linears) == 3 + 4  # layer 0's out, up, down (its qkv reads frozen embeddings); layer 1's 4
    assert [node.saved_tensors[0] for node in linears] == [None] * len(linears)  # (x, weight): no x
    (head,) = heads  # the LM head and its loss in one (layers.cross_entropy.linear_cross_entropy)
    x, weight, grad_x, grad_w, grad_b = head.saved_tensors
    assert x is None and grad_w is None and grad_b is None and grad_x.shape == (ids.numel(), weight.shape[1])
    loss.backward()
    assert model.base_model.model.decoder.layers[0].attn.qkv.lora_B["default"]["c_attn"].grad.abs().sum() > 0
