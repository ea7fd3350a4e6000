"""PPO (triformers.rl): value-head wrappers, the reference model, and learning on a task built here: a tiny GPT-2
rewarded for the share of one token in its 3-token responses raises its held-out mean reward well above the
start while the KL to the reference stays under the adaptive controller's target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triformers.rl import (AutoModelForCausalLMWithValueHead, AutoModelForSeq2SeqLMWithValueHead, PPOConfig,
                           PPOTrainer, create_reference_model)
from triformers.rl.core import LengthSampler

TARGET = 3
GEN = dict(do_sample=True, top_k=0, top_p=1.0, max_new_tokens=3)


class Tok:
    pad_token_id = eos_token_id = 0


def tiny_decoder(folder) -> str:
    import transformers

    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=16, n_positions=32, n_embd=32, n_layer=2,
                                                         n_head=2, bos_token_id=None, eos_token_id=None)
                                 ).save_pretrained(folder)
    return str(folder)


def reward(response: torch.Tensor) -> torch.Tensor:
    return (response == TARGET).float().mean()


def held_out_reward(model, queries) -> float:
    torch.manual_seed(123)
    scores = []
    for q in queries:
        out = model.generate(input_ids=q.unsqueeze(0).repeat(4, 1), **GEN)[:, len(q):]
        scores += [reward(o).item() for o in out]
    return float(np.mean(scores))


def test_ppo_raises_reward_under_kl_target(tmp_path):
    model = AutoModelForCausalLMWithValueHead.from_pretrained(tiny_decoder(tmp_path / "m"))
    rng = torch.Generator().manual_seed(1)
    train = [{"input_ids": torch.randint(1, 16, (4,), generator=rng)} for _ in range(512)]
    held = [torch.randint(1, 16, (4,), generator=rng) for _ in range(64)]
    config = PPOConfig(learning_rate=1e-2, batch_size=32, mini_batch_size=8, ppo_epochs=4, target=6.0)
    trainer = PPOTrainer(config=config, model=model, tokenizer=Tok(), dataset=train,
                         data_collator=lambda rows: {k: [r[k] for r in rows] for k in rows[0]})
    start = held_out_reward(model.pretrained_model, held)
    kls = []
    for batch in trainer.dataloader:
        responses = [trainer.generate(q, return_prompt=False, **GEN).squeeze(0) for q in batch["input_ids"]]
        scores = [reward(r) for r in responses]
        stats = trainer.step(batch["input_ids"], responses, scores)
        trainer.log_stats(stats, batch, scores)
        kls.append(stats["objective/kl"])
    end = held_out_reward(model.pretrained_model, held)
    print(f"PPO held-out mean reward {start:.3f} -> {end:.3f}; KL last {kls[-1]:.3f}, max {max(kls):.3f} "
          f"(target {config.target})")
    assert end > 2 * start and end - start > 0.1
    assert max(kls) < config.target
    assert len(trainer.history) == 16 and "env/reward_mean" in trainer.history[-1]
    for key in ("objective/kl", "objective/kl_coef", "objective/entropy", "ppo/returns/mean",
                "ppo/policy/advantages_mean", "ppo/loss/total", "ppo/loss/policy", "ppo/loss/value",
                "ppo/mean_scores", "ppo/val/var_explained", "ppo/learning_rate", "time/ppo/total"):
        assert isinstance(stats[key], float), key
    assert stats["objective/kl_coef"] < config.init_kl_coef  # adaptive: KL below target lowers it


def test_value_head_wrappers(tmp_path):
    from trainer_assets import tiny_t5

    from triformers.peft import LoraConfig, TaskType, get_peft_model

    folder = tiny_t5(tmp_path / "t5")
    model = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(folder)
    ids = torch.tensor([[5, 6, 7, 1]])
    logits, loss, values = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 decoder_input_ids=torch.tensor([[0, 8, 9]]))
    assert logits.shape[:2] == values.shape == (1, 3) and loss is None and logits.dtype == torch.float32
    assert model.v_head.summary.in_features == 32
    with pytest.raises(Exception, match="decoder"):
        AutoModelForCausalLMWithValueHead.from_pretrained(folder)
    # over a LoRA model: trainable = adapter + value head (hidden + 1)
    from triformers import AutoModelForSeq2SeqLM

    peft_model = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(folder), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM))
    lora = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    wrapped = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(peft_model, is_trainable=True)
    assert wrapped.is_peft_model and wrapped.num_parameters(only_trainable=True) == lora + 33
    reference = create_reference_model(wrapped)
    assert reference.num_parameters(only_trainable=True) == 0 and not reference.training
    wrapped.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "adapter_config.json").is_file()
    assert (tmp_path / "saved" / "value_head.safetensors").is_file()
    full = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(folder)
    full.save_pretrained(tmp_path / "full")
    again = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(tmp_path / "full")
    assert torch.equal(again.v_head.summary.weight, full.v_head.summary.weight)


def test_ppo_over_lora_uses_disabled_adapter_as_reference(tmp_path):
    from triformers import AutoModelForCausalLM
    from triformers.peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_decoder(tmp_path / "m")),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM"))
    model = AutoModelForCausalLMWithValueHead.from_pretrained(peft_model)
    trainer = PPOTrainer(config=PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, learning_rate=1e-2),
                         model=model, tokenizer=Tok())
    assert trainer.ref_model is None
    queries = [torch.tensor([1, 2, 3]), torch.tensor([4, 5]), torch.tensor([6, 7, 8, 9]), torch.tensor([2])]
    responses = trainer.generate(queries, return_prompt=False, batch_size=2, **GEN)
    assert [len(r) for r in responses] == [3, 3, 3, 3]
    first = trainer.step(queries, responses, [torch.tensor(1.0)] * 4)
    assert first["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # LoRA B starts at zero: policy == reference
    second = trainer.step(queries, responses, [torch.tensor(1.0)] * 4)
    assert second["objective/kl"] != 0.0
    with pytest.raises(ValueError, match="Batch size"):
        trainer.step(queries[:2], responses[:2], [torch.tensor(1.0)] * 2)


def test_length_sampler_and_config():
    sampler = LengthSampler(3, 6)
    assert {sampler() for _ in range(200)} == {3, 4, 5}
    with pytest.raises(Exception, match="multiple"):
        PPOConfig(batch_size=10, mini_batch_size=4)
