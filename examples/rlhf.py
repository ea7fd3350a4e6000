"""PPO in a minute on CPU, offline: a tiny GPT-2 (random weights, 16-token vocabulary) learns to say token 3 more
often, rewarded for its share of token 3 in each 3-token response; prints the held-out mean reward before and
after and the KL to the reference. `python examples/rlhf.py` (needs transformers only to write the tiny model)."""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from triformers.rl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

TARGET, GEN = 3, dict(do_sample=True, top_k=0, top_p=1.0, max_new_tokens=3)


class Tokens:  # PPOTrainer reads pad / eos ids from the tokenizer; the task needs no text
    pad_token_id = eos_token_id = 0


def reward(response: torch.Tensor) -> torch.Tensor:
    return (response == TARGET).float().mean()


def held_out(model, queries) -> float:
    torch.manual_seed(123)
    outs = [model.generate(input_ids=q.unsqueeze(0).repeat(4, 1), **GEN)[:, len(q):] for q in queries]
    return float(np.mean([reward(o).item() for out in outs for o in out]))


def main() -> None:
    import transformers

    folder = tempfile.mkdtemp()
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=16, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                                         bos_token_id=None, eos_token_id=None)).save_pretrained(folder)
    model = AutoModelForCausalLMWithValueHead.from_pretrained(folder)
    rng = torch.Generator().manual_seed(1)
    train = [{"input_ids": torch.randint(1, 16, (4,), generator=rng)} for _ in range(512)]
    queries = [torch.randint(1, 16, (4,), generator=rng) for _ in range(64)]
    config = PPOConfig(learning_rate=1e-2, batch_size=32, mini_batch_size=8, ppo_epochs=4)
    trainer = PPOTrainer(config=config, model=model, tokenizer=Tokens(), dataset=train,
                         data_collator=lambda rows: {k: [r[k] for r in rows] for k in rows[0]})
    before = held_out(model.pretrained_model, queries)
    for step, batch in enumerate(trainer.dataloader):
        responses = [trainer.generate(q, return_prompt=False, **GEN).squeeze(0) for q in batch["input_ids"]]
        scores = [reward(r) for r in responses]
        stats = trainer.step(batch["input_ids"], responses, scores)
        print(f"step {step:2d}  reward {stats['ppo/mean_scores']:.3f}  KL {stats['objective/kl']:.3f}")
    after = held_out(model.pretrained_model, queries)
    print(f"held-out mean reward {before:.3f} -> {after:.3f} (+{after - before:.3f}); "
          f"KL to the reference {stats['objective/kl']:.3f} (target {config.target})")


if __name__ == "__main__":
    main()
