"""The model surface code written against transformers uses, side by side with transformers 5.24.

Tiny random checkpoints of GPT-2, BLOOM, BERT, RoBERTa, T5 and BART (every weight perturbed, so that a swapped
tensor shows), saved by transformers and loaded by both libraries. Compared: `output_hidden_states` (count and
values), `output_attentions` (values, through the eager path), `return_dict=False` tuples (order and values),
`inputs_embeds`, incremental decoding with the cache passed back, `resize_token_embeddings`, gradient
checkpointing. Tolerance: fp32 atol 1e-5, the parity bound of the other model tests (same math, other order).
"""

from __future__ import annotations

import pytest
import torch
import transformers as tr

import triformers
from triformers.errors import InputError

ATOL = dict(atol=1e-5, rtol=0)
VOCAB = 97
CONFIGS = {
    "gpt2": lambda: tr.GPT2Config(vocab_size=VOCAB, n_embd=24, n_layer=2, n_head=3, n_positions=40, bos_token_id=0,
                                  eos_token_id=0),
    "bloom": lambda: tr.BloomConfig(vocab_size=VOCAB, hidden_size=24, n_layer=2, n_head=3, bos_token_id=0,
                                    eos_token_id=0, pad_token_id=1),
    "bert": lambda: tr.BertConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                  intermediate_size=40, max_position_embeddings=40),
    "roberta": lambda: tr.RobertaConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                        intermediate_size=40, max_position_embeddings=42),
    "t5": lambda: tr.T5Config(vocab_size=VOCAB, d_model=24, d_kv=8, num_heads=3, d_ff=40, num_layers=2,
                              num_decoder_layers=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1),
    "bart": lambda: tr.BartConfig(vocab_size=VOCAB, d_model=24, encoder_layers=2, decoder_layers=2,
                                  encoder_attention_heads=3, decoder_attention_heads=3, encoder_ffn_dim=40,
                                  decoder_ffn_dim=40, max_position_embeddings=40),
}
LM = {"gpt2": tr.GPT2LMHeadModel, "bloom": tr.BloomForCausalLM, "bert": tr.BertForMaskedLM,
      "roberta": tr.RobertaForMaskedLM, "t5": tr.T5ForConditionalGeneration, "bart": tr.BartForConditionalGeneration}
BODY = {"gpt2": tr.GPT2Model, "bloom": tr.BloomModel, "bert": tr.BertModel, "roberta": tr.RobertaModel,
        "t5": tr.T5Model, "bart": tr.BartModel}
SEQ2SEQ = ("t5", "bart")
DECODERS = ("gpt2", "bloom")


def ours_class(kind: str, head: bool):
    if not head:
        return triformers.AutoModel
    return {"t5": triformers.AutoModelForSeq2SeqLM, "bart": triformers.AutoModelForSeq2SeqLM,
            "bert": triformers.AutoModelForMaskedLM, "roberta": triformers.AutoModelForMaskedLM}.get(
                kind, triformers.AutoModelForCausalLM)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """kind -> (folder, transformers model with the LM head, in eval)."""
    out = {}
    for i, kind in enumerate(CONFIGS):
        torch.manual_seed(i)
        model = LM[kind](CONFIGS[kind]())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        folder = tmp_path_factory.mktemp(kind)
        model.save_pretrained(folder)
        out[kind] = (folder, model.eval())
    return out


def inputs(kind: str, length: int = 7, batch: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(3, VOCAB, (batch, length), generator=gen)
    batch_inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind in SEQ2SEQ:
        batch_inputs["decoder_input_ids"] = torch.randint(3, VOCAB, (batch, 5), generator=gen)
    return batch_inputs


def assert_states_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **ATOL)


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("head", [True, False])
def test_hidden_states_and_attentions_match_transformers(kind, head, saved):
    folder, _ = saved[kind]
    theirs = (LM if head else BODY)[kind].from_pretrained(folder, attn_implementation="eager").eval()
    ours = ours_class(kind, head).from_pretrained(folder)
    batch = inputs(kind)
    with torch.no_grad():
        a = ours(**batch, output_hidden_states=True, output_attentions=True)
        b = theirs(**batch, output_hidden_states=True, output_attentions=True, use_cache=False)
    if kind in SEQ2SEQ:
        for name in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions",
                     "cross_attentions"):
            assert_states_close(getattr(a, name), getattr(b, name))
        assert len(a.encoder_hidden_states) == 3 and len(a.decoder_hidden_states) == 3  # embeddings + 2 layers
    else:
        assert_states_close(a.hidden_states, b.hidden_states)
        assert_states_close(a.attentions, b.attentions)
        assert len(a.hidden_states) == 3 and len(a.attentions) == 2
    # transformers gives GPT-2 / BERT (which can carry cross-attention) an empty `cross_attentions`; ours is unset
    assert list(a.keys()) == [k for k in b.keys() if b[k] != ()]


@pytest.mark.parametrize("kind", CONFIGS)
def test_return_dict_false_gives_transformers_tuple_order(kind, saved):
    folder, theirs = saved[kind]
    ours = ours_class(kind, True).from_pretrained(folder)
    batch = inputs(kind)
    labels = batch.get("decoder_input_ids", batch["input_ids"])
    use_cache = {"use_cache": False} if kind not in ("bert", "roberta") else {}
    with torch.no_grad():
        a = ours(**batch, labels=labels, output_hidden_states=True, return_dict=False, **use_cache)
        b = theirs(**batch, labels=labels, output_hidden_states=True, return_dict=False, **use_cache)
    assert isinstance(a, tuple) and len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(y, tuple):
            assert_states_close(x, y)
        else:
            torch.testing.assert_close(x, y, **ATOL)
    out = ours(**batch, labels=labels)
    assert out[0] is out.loss and out[1] is out.logits and out[:2] == (out.loss, out.logits)
    assert out.to_tuple()[:2] == (out.loss, out.logits) and dict(out.items())["logits"] is out.logits


@pytest.mark.parametrize("kind", [k for k in CONFIGS if k not in ("bert", "roberta")])
def test_cache_outputs_take_transformers_place(kind, saved):
    folder, theirs = saved[kind]
    ours = ours_class(kind, True).from_pretrained(folder)
    batch = inputs(kind)
    with torch.no_grad():
        a = ours(**batch, use_cache=True)
        b = theirs(**batch, use_cache=True)
    assert list(a.keys()) == list(b.keys())  # transformers 5.24 names the field `cache`
    assert a.past_key_values is a.cache and a.cache.get_seq_length() == b.cache.get_seq_length()


@pytest.mark.parametrize("kind", CONFIGS)
def test_inputs_embeds_equal_ids(kind, saved):
    folder, theirs = saved[kind]
    ours = ours_class(kind, True).from_pretrained(folder)
    batch = inputs(kind)
    embedded = dict(batch, inputs_embeds=ours.get_input_embeddings()(batch.pop("input_ids")))
    if kind in SEQ2SEQ:
        embedded["decoder_inputs_embeds"] = ours.get_input_embeddings()(embedded.pop("decoder_input_ids"))
    with torch.no_grad():
        by_ids = ours(**inputs(kind)).logits
        torch.testing.assert_close(ours(**embedded).logits, by_ids, **ATOL)
        their = {k: v for k, v in embedded.items()}
        torch.testing.assert_close(theirs(**their, use_cache=False).logits if kind not in ("bert", "roberta")
                                   else theirs(**their).logits, by_ids, **ATOL)
    with pytest.raises(InputError, match="not both"):
        ours(**inputs(kind), inputs_embeds=embedded["inputs_embeds"])


@pytest.mark.parametrize("kind", ["gpt2", "bloom", "t5", "bart"])
def test_incremental_decoding_with_the_returned_cache_equals_the_full_forward(kind, saved):
    folder, theirs = saved[kind]
    ours = ours_class(kind, True).from_pretrained(folder)
    batch = inputs(kind, length=6)
    seq2seq = kind in SEQ2SEQ
    tokens = batch["decoder_input_ids"] if seq2seq else batch["input_ids"]
    with torch.no_grad():
        full = ours(**batch).logits
        prefix = dict(batch, **({"decoder_input_ids": tokens[:, :2]} if seq2seq else
                                {"input_ids": tokens[:, :2], "attention_mask": batch["attention_mask"][:, :2]}))
        out = ours(**prefix, use_cache=True)
        steps = [out.logits]
        cache = out.past_key_values
        for t in range(2, tokens.shape[1]):
            mask = torch.ones(tokens.shape[0], t + 1, dtype=torch.long)  # past + new, as transformers takes it
            step = dict(batch, decoder_input_ids=tokens[:, t:t + 1]) if seq2seq else \
                {"input_ids": tokens[:, t:t + 1], "attention_mask": mask}
            out = ours(**step, past_key_values=cache, use_cache=True)
            assert out.past_key_values is cache and cache.get_seq_length() == t + 1
            steps.append(out.logits)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, **ATOL)
        b = theirs(**prefix, use_cache=True)
        their_step = dict(batch, decoder_input_ids=tokens[:, 2:3]) if seq2seq else \
            {"input_ids": tokens[:, 2:3], "attention_mask": torch.ones(tokens.shape[0], 3, dtype=torch.long)}
        theirs_next = theirs(**their_step, past_key_values=b.cache).logits
    torch.testing.assert_close(steps[1], theirs_next, **ATOL)
    empty = triformers.DynamicCache()  # transformers' idiom: an empty cache the model fills
    with torch.no_grad():
        torch.testing.assert_close(ours(**prefix, past_key_values=empty).logits, steps[0], **ATOL)
    assert empty.get_seq_length() == 2


@pytest.mark.parametrize("kind", CONFIGS)
def test_resize_token_embeddings_keeps_rows_and_tie(kind, saved):
    folder, theirs = saved[kind]
    ours = ours_class(kind, True).from_pretrained(folder)
    old = ours.get_input_embeddings().weight.detach().clone()
    embedding = ours.resize_token_embeddings(VOCAB + 5, pad_to_multiple_of=8)
    assert embedding is ours.get_input_embeddings() and embedding.num_embeddings == 104
    assert ours.config.vocab_size == 104
    torch.testing.assert_close(embedding.weight[:VOCAB], old)
    assert ours.get_output_embeddings().weight is embedding.weight  # tied heads stay tied
    ids = torch.tensor([[3, 100, 103, 5]])
    batch = {"input_ids": ids} if kind not in SEQ2SEQ else {"input_ids": ids, "decoder_input_ids": ids}
    with torch.no_grad():
        assert ours(**batch).logits.shape[-1] == 104
    theirs_resized = LM[kind].from_pretrained(folder)
    theirs_resized.resize_token_embeddings(VOCAB + 5, pad_to_multiple_of=8)
    assert theirs_resized.get_input_embeddings().weight.shape == embedding.weight.shape


def test_resize_untied_head_resizes_it_too(saved):
    folder, _ = saved["gpt2"]
    ours = triformers.AutoModelForCausalLM.from_pretrained(folder, tie_word_embeddings=False)
    head = ours.get_output_embeddings()
    assert head is ours.lm_head and head.weight is not ours.get_input_embeddings().weight
    ours.resize_token_embeddings(VOCAB + 3)
    assert ours.lm_head.weight.shape == (VOCAB + 3, 24) and ours.lm_head.weight is not ours.embed_tokens.weight


@pytest.mark.parametrize("kind", ["gpt2", "bert", "t5"])
def test_gradient_checkpointing_gives_same_grads_and_saves_activations(kind, saved):
    folder, _ = saved[kind]
    batch = inputs(kind, length=12, batch=4)
    labels = batch.get("decoder_input_ids", batch["input_ids"])

    def step(checkpointing: bool):
        model = ours_class(kind, True).from_pretrained(folder)
        model.train()  # dropout on: the recomputation replays the same masks (torch's RNG state is restored)
        torch.manual_seed(0)
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        saved_bytes = []
        calls = []
        handles = [block.register_forward_pre_hook(lambda *a: calls.append(1)) for block in model.modules()
                   if type(block).__name__ == "Block"]
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_bytes.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            loss = model(**batch, labels=labels).loss
        loss.backward()  # with checkpointing, each block's forward runs again here
        for handle in handles:
            handle.remove()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, sum(saved_bytes), len(calls)

    loss, grads, plain_bytes, plain_calls = step(False)
    loss_c, grads_c, checkpointed_bytes, checkpointed_calls = step(True)
    torch.testing.assert_close(loss_c, loss, **ATOL)
    assert grads.keys() == grads_c.keys()
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name], atol=1e-5, rtol=1e-4)
    assert checkpointed_calls == 2 * plain_calls  # each block runs again in backward
    assert checkpointed_bytes < 0.6 * plain_bytes, (checkpointed_bytes, plain_bytes)  # kept for backward


def test_model_helpers(saved):
    folder, theirs = saved["gpt2"]
    ours = triformers.AutoModelForCausalLM.from_pretrained(folder)
    assert ours.num_parameters() == theirs.num_parameters()
    ours.embed_tokens.weight.requires_grad_(False)
    assert ours.num_parameters(only_trainable=True) == ours.num_parameters() - VOCAB * 24
    assert ours.can_generate() and not triformers.AutoModel.from_pretrained(folder).can_generate()
    assert triformers.AutoModel.from_pretrained(folder).get_output_embeddings() is None
    new = torch.nn.Embedding(VOCAB, 24)
    ours.set_input_embeddings(new)
    assert ours.get_input_embeddings() is new and ours.get_output_embeddings() is new
    bert_folder, bert = saved["bert"]
    assert triformers.AutoModelForMaskedLM.from_pretrained(bert_folder).num_parameters() == bert.num_parameters()


def test_eager_attention_is_honoured_and_others_refused(saved):
    folder, _ = saved["gpt2"]
    eager = triformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    sdpa = triformers.AutoModelForCausalLM.from_pretrained(folder)
    assert eager.attn_implementation == "eager" and sdpa.attn_implementation == "sdpa"
    ids = inputs("gpt2")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(eager(ids).logits, sdpa(ids).logits, **ATOL)
    with pytest.raises(InputError, match="flash_attention_2"):
        triformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="flash_attention_2")


def test_config_defaults_for_outputs_are_read(saved):
    folder, _ = saved["bert"]
    model = triformers.AutoModel.from_pretrained(folder, output_hidden_states=True)
    with torch.no_grad():
        assert len(model(**inputs("bert")).hidden_states) == 3
