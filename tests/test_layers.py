"""The layers' fast paths: the oneDNN linear (same values and gradients as F.linear, usable like any autograd
output, keeping for backward only what a wanted gradient reads), dropout, the cross-entropy and attention
dropout that keep less for backward, and the RMS norm."""

import pytest
import torch
import torch.nn.functional as F

from triformers.layers import onednn
from triformers.layers.linear import Linear, linear

needs_onednn = pytest.mark.skipif(not onednn.AVAILABLE, reason="this torch build has no oneDNN (mkldnn)")


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_match_f_linear(bias):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 37, requires_grad=True)
    layer = Linear(37, 23, bias=bias)
    out = layer(x)
    ref_x = x.detach().clone().requires_grad_()
    ref = F.linear(ref_x, layer.weight, layer.bias)
    # different summation order than the default BLAS path: agreement to fp32 rounding, not bit-exact
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
    ref_grads = torch.autograd.grad(ref.square().sum(), [ref_x, *layer.parameters()])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


@needs_onednn
def test_output_can_be_modified_in_place_and_inference_takes_the_kernel(monkeypatch):
    layer = Linear(8, 4)
    y = layer(torch.randn(2, 3, 8))
    y[..., 0] = 0.0  # a view of a custom Function's output would refuse this
    y.sum().backward()
    assert layer.weight.grad is not None
    calls = []
    monkeypatch.setattr(onednn, "matmul", lambda *a: calls.append(1) or F.linear(*a))
    with torch.no_grad():
        linear(torch.randn(2, 3, 8), layer.weight, layer.bias)
    assert calls, "CPU inference in fp32 should go through oneDNN"


@needs_onednn
@pytest.mark.parametrize("blas", [True, False])
def test_few_row_fp32_matmuls_take_blas_where_the_machine_runs_them_faster(blas, monkeypatch):
    layer = Linear(8, 4)
    monkeypatch.setattr(onednn, "BLAS_FEW_ROWS", blas)
    kernel, calls = onednn.matmul, []
    monkeypatch.setattr(onednn, "matmul", lambda *a: calls.append(a[0].shape) or kernel(*a))
    with torch.no_grad():
        for shape in [(1, 8), (1, 3, 8), (4, 8)]:
            x = torch.randn(shape)
            torch.testing.assert_close(linear(x, layer.weight, layer.bias), F.linear(x, layer.weight, layer.bias),
                                       atol=1e-6, rtol=1e-6)
        if onednn.BF16:  # bf16 keeps oneDNN at any row count
            linear(torch.randn(1, 8, dtype=torch.bfloat16), layer.weight.bfloat16(), layer.bias.bfloat16())
    few = [(1, 8), (1, 3, 8)]
    expected = ([] if blas else few) + [(4, 8)] + ([(1, 8)] if onednn.BF16 else [])
    assert calls == expected


def test_the_few_row_kernel_choice_follows_the_cpu_and_the_override(monkeypatch):
    monkeypatch.delenv("TRIFORMERS_BLAS_FEW_ROWS", raising=False)
    for vendor, expected in [("GenuineIntel", True), ("AuthenticAMD", False)]:
        monkeypatch.setattr(onednn, "_cpu_vendor", lambda v=vendor: v)
        assert onednn._blas_for_few_rows() is (expected and torch.backends.mkl.is_available())
    for setting, expected in [("0", False), ("1", True)]:
        monkeypatch.setenv("TRIFORMERS_BLAS_FEW_ROWS", setting)
        assert onednn._blas_for_few_rows() is expected


@needs_onednn
@pytest.mark.parametrize("frozen", ["weight", "input"])
def test_backward_keeps_only_what_a_wanted_gradient_reads(frozen, monkeypatch):
    """A frozen weight (LoRA's base layer) needs no grad_W, so its layer keeps no input; an input that needs no
    gradient keeps no weight. grad_x = g W is BLAS's, not a oneDNN call (which would reorder the transposed weight)."""
    torch.manual_seed(0)
    layer = Linear(37, 23)
    layer.weight.requires_grad_(frozen != "weight")
    x = torch.randn(3, 5, 37, requires_grad=frozen == "weight")
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t, lambda t: t):
        out = layer(x)
    assert out.grad_fn.next_functions[0][0].name() == "OneDNNLinearBackward"
    assert (x.data_ptr() in saved, layer.weight.data_ptr() in saved) == ((False, True) if frozen == "weight"
                                                                        else (True, False))
    calls = []
    kernel = onednn.matmul
    monkeypatch.setattr(onednn, "matmul", lambda *a: calls.append(1) or kernel(*a))
    wanted = [x] if frozen == "weight" else [layer.weight, layer.bias]
    grads = torch.autograd.grad(out.square().sum(), wanted)
    assert not calls
    reference = F.linear(x, layer.weight, layer.bias)
    for got, want in zip(grads, torch.autograd.grad(reference.square().sum(), wanted), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)  # fp32 rounding, as the test above


def _tiny_gpt2(dtype=torch.float32):
    import triformers

    config = triformers.AutoConfig.for_model("gpt2", n_layer=2, n_embd=64, n_head=4, vocab_size=300,
                                             n_positions=64)
    torch.manual_seed(0)
    return triformers.AutoModelForCausalLM.from_config(config).eval().to(dtype)


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_weights_give_the_same_tokens_and_leave_parameters_alone(dtype, monkeypatch):
    if dtype == torch.bfloat16 and not onednn.BF16:
        pytest.skip("no oneDNN bf16 on this CPU")
    model = _tiny_gpt2(dtype)
    ids = torch.randint(0, 300, (2, 7))
    with torch.inference_mode():
        plain_logits = model(ids).logits
        plain = model.generate(ids, max_new_tokens=8, min_new_tokens=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.pack_weights()
    packed = [w for w in model._linear_weights() if "_onednn_packed" in w.__dict__]
    assert len(packed) == 2 * 4 + 1  # qkv, out, up, down per layer + the tied LM head
    kernel, layouts = onednn.matmul, []
    monkeypatch.setattr(onednn, "matmul", lambda x, w, b=None: layouts.append(w.layout) or kernel(x, w, b))
    with torch.inference_mode():
        packed_logits = model(ids).logits
    assert layouts == [torch._mkldnn] * 9  # every matmul read its packed copy
    monkeypatch.setattr(onednn, "matmul", kernel)
    with torch.inference_mode():
        assert torch.equal(model.generate(ids, max_new_tokens=8, min_new_tokens=8), plain)
    tol = 1e-5 if dtype == torch.float32 else 2e-2 * plain_logits.abs().max().item()
    torch.testing.assert_close(packed_logits, plain_logits, atol=tol, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.unpack_weights()
    assert not any("_onednn_packed" in w.__dict__ for w in model._linear_weights())


@needs_onednn
def test_a_packed_copy_is_ignored_once_its_weight_changes():
    model = _tiny_gpt2().pack_weights()
    ids = torch.randint(0, 300, (1, 5))
    with torch.no_grad():
        model.decoder.layers[0].mlp.up.weight.mul_(2.0)  # bumps the version counter
        changed = model(ids).logits
        model.unpack_weights()
        plain = model(ids).logits
    torch.testing.assert_close(changed, plain, atol=1e-5, rtol=0)


@needs_onednn
def test_a_packed_copy_is_ignored_once_the_model_is_cast():
    if not onednn.BF16:
        pytest.skip("no oneDNN bf16 on this CPU")
    model = _tiny_gpt2().pack_weights()
    model.to(torch.bfloat16)  # replaces each parameter's data; the version counter stays the same
    ids = torch.randint(0, 300, (1, 5))
    with torch.inference_mode():
        cast = model(ids).logits
        model.unpack_weights()
        plain = model(ids).logits
    assert cast.dtype == torch.bfloat16
    torch.testing.assert_close(cast, plain, atol=0, rtol=0)


def test_dropout_keeps_1_minus_p_scales_and_masks_the_gradient_alike():
    from triformers.layers.dropout import Dropout

    torch.manual_seed(0)
    layer = Dropout(0.1)
    x = torch.ones(2000, 500, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003
    assert torch.equal(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.9)
    bf16 = layer(torch.ones(1000, 1000, dtype=torch.bfloat16))
    assert bf16.dtype == torch.bfloat16 and abs((bf16 != 0).float().mean().item() - 0.9) < 0.003
    layer.eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_dropout_mask_is_a_32_bit_draw_seeded_by_torch():
    from triformers.layers.dropout import keep_mask

    def _keep(x, p):
        return keep_mask(x.shape, p)

    x = torch.empty(1 << 24)
    # p = 1.5 / 65536: a high word below 1 always drops, one equal to 1 drops half the time (the tie path);
    # comparing the high word alone would drop 1/65536: 256 of 2^24 expected against 384 (sd ~20)
    torch.manual_seed(0)
    dropped = (~_keep(x, 1.5 / 65536)).sum().item()
    assert abs(dropped - 384) < 5 * 384**0.5, dropped
    for p in (0.05, 0.1, 0.5, 0.9):
        kept = _keep(x, p).float().mean().item()
        assert abs(kept - (1 - p)) < 5 * (p * (1 - p) / x.numel()) ** 0.5, (p, kept)
    assert _keep(x, 1e-300).all()  # p rounds to 0 in 2^-32 steps
    torch.manual_seed(3)
    first, second = _keep(x[:1000], 0.3), _keep(x[:1000], 0.3)
    torch.manual_seed(3)
    assert torch.equal(_keep(x[:1000], 0.3), first) and not torch.equal(first, second)  # torch's seed governs
    with torch.random.fork_rng():
        _keep(x[:10], 0.3)
    assert torch.equal(_keep(x[:1000], 0.3), second)  # a forked draw leaves the stream where it was
    assert _keep(torch.empty(2, 3, 5), 0.3).shape == (2, 3, 5)


@pytest.mark.parametrize("kind", ["causal", "mask", "none"])
def test_attention_dropout_path_matches_sdpa_and_drops_probabilities(kind, monkeypatch):
    from triformers.layers import attention as attention_module
    from triformers.layers.attention import Attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.randn(2, 1, 6, 6, dtype=torch.float64) if kind == "mask" else None
    causal = kind == "causal"
    ours = attention_module._attention_with_dropout(q, k, v, mask, causal, None, 1e-300)  # keeps everything
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(ours, reference)
    grads = torch.autograd.grad(ours.sum(), (q, k, v))
    torch.testing.assert_close(grads, torch.autograd.grad(reference.sum(), (q, k, v)))

    # with p = 0.5 each probability is kept with probability 1/2 and doubled: v = 1 gives row sums ~ 1 on average
    ones = torch.ones(64, 4, 32, 8)
    rows = attention_module._attention_with_dropout(torch.randn(64, 4, 32, 8), torch.randn(64, 4, 32, 8), ones,
                                                    None, causal, None, 0.5)[..., 0]
    assert abs(rows.mean().item() - 1.0) < 0.03 and rows.std().item() > 0.1

    calls = []
    monkeypatch.setattr(attention_module, "_attention_with_dropout", lambda *a: calls.append(a) or a[0])
    layer = Attention(16, 2, 8, bias=True, scale=True, dropout=0.1)
    layer(torch.randn(1, 4, 16), None, is_causal=True)
    layer.eval()(torch.randn(1, 4, 16), None, is_causal=True)
    assert len(calls) == 1  # training with dropout only


def test_rms_norm_fast_path_equals_the_t5_formula():
    from triformers.layers.norms import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(64, eps=1e-6)
    norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 64, requires_grad=True)
    got = norm(x)
    expected = norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    torch.testing.assert_close(got, expected)
    g = torch.randn_like(got)
    torch.testing.assert_close(torch.autograd.grad(got, (x, norm.weight), g),
                               torch.autograd.grad(expected, (x, norm.weight), g))
    half = RMSNorm(64).to(torch.bfloat16)  # half precision keeps T5's order: normalise in fp32, cast, scale
    y = half(x.detach().to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), RMSNorm(64)(x.detach()), atol=2e-2, rtol=2e-2)


def _new_tensors_of_shape(shape: tuple[int, ...], run) -> int:
    """How many tensors of `shape` the ops called by `run` allocate (outputs that are none of their inputs)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        made = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {a.data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs)) if torch.is_tensor(a)}
            for t in torch.utils._pytree.tree_leaves(out):
                if torch.is_tensor(t) and tuple(t.shape) == shape and t.data_ptr() not in inputs:
                    Count.made += 1
            return out

    with Count():
        run()
    return Count.made


@pytest.mark.parametrize("ignored", [0.0, 0.3, 1.0])
def test_cross_entropy_equals_torch_and_its_backward_makes_one_vocabulary_sized_tensor(ignored):
    from triformers.layers.cross_entropy import cross_entropy

    torch.manual_seed(0)
    N, V = 64, 500
    logits = (torch.randn(N, V) * 3).requires_grad_()
    labels = torch.randint(0, V, (N,))
    labels[torch.rand(N) < ignored] = -100
    ours, theirs = cross_entropy(logits, labels), F.cross_entropy(logits, labels, ignore_index=-100)
    assert torch.equal(ours, theirs) or (ignored == 1.0 and ours.isnan() and theirs.isnan())  # the same two kernels
    (got,) = torch.autograd.grad(ours, logits, retain_graph=True)
    (want,) = torch.autograd.grad(theirs, logits, retain_graph=True)
    # exp(log_p) here, log_softmax's backward kernel's faster exp there: a unit or two in the last place
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-5)
    assert torch.equal(got[labels == -100], torch.zeros_like(got[labels == -100]))
    assert _new_tensors_of_shape((N, V), lambda: torch.autograd.grad(ours, logits, retain_graph=True)) == 1
    assert _new_tensors_of_shape((N, V), lambda: torch.autograd.grad(theirs, logits)) == 2


def _alive_after(run, shape):
    """(run's result, how many float tensors of `shape` with storage of their own (not views into a larger
    buffer) the ops inside `run` made are still alive after it)."""
    import gc
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    refs = []

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            refs.extend(weakref.ref(t) for t in torch.utils._pytree.tree_leaves(out)
                        if torch.is_tensor(t) and tuple(t.shape) == shape and t.is_floating_point()
                        and t.untyped_storage().nbytes() == t.numel() * t.element_size())
            return out

    with Track():
        result = run()
    gc.collect()
    return result, len({r().untyped_storage().data_ptr() for r in refs if r() is not None})


@pytest.mark.parametrize("kind, groups, dtype", [("causal", 1, torch.float32), ("mask", 1, torch.float32),
                                                 ("causal", 3, torch.float32), ("mask", 1, torch.bfloat16),
                                                 ("causal", 3, torch.bfloat16)])
def test_dropout_attention_backward_is_eager_attentions_exactly(kind, groups, dtype):
    """The recomputing backward applies the chain rule eager attention's ops would: the same gradients to the
    bit, grouped-query heads (summed onto their kv head) and bf16 included."""
    from triformers.layers import attention as attention_module

    torch.manual_seed(0)
    q = torch.randn(2, 6, 7, 8, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(2, 6 // groups, 7, 8, dtype=dtype, requires_grad=True) for _ in range(2))
    mask = torch.randn(2, 1, 7, 7) if kind == "mask" else None
    torch.manual_seed(1)
    ours = attention_module._attention_with_dropout(q, k, v, mask, kind == "causal", None, 0.3)
    torch.manual_seed(1)  # the same dropout mask
    reference = attention_module.eager_attention(q, k, v, mask, is_causal=kind == "causal", dropout_p=0.3)[0]
    assert torch.equal(ours, reference)
    g = torch.randn_like(ours)
    for got, want in zip(torch.autograd.grad(ours, (q, k, v), g), torch.autograd.grad(reference, (q, k, v), g),
                         strict=True):
        assert got.dtype == dtype and torch.equal(got, want)


@pytest.mark.parametrize("kind", ["causal", "mask"])
def test_attention_dropout_keeps_neither_probabilities_nor_copies_of_q_and_k(kind):
    from triformers.layers import attention as attention_module

    torch.manual_seed(0)
    B, nh, T, hd = 2, 3, 6, 8
    projected = torch.randn(B, T, 3 * nh * hd, requires_grad=True)  # as the fused qkv projection's output
    mask = torch.randn(B, 1, T, T) if kind == "mask" else None

    def heads():
        return projected.view(B, T, 3 * nh, hd).transpose(1, 2).split(nh, dim=1)  # views, not contiguous

    def ours():
        return attention_module._attention_with_dropout(*heads(), mask, kind == "causal", None, 0.3)

    torch.manual_seed(1)
    y, probabilities = _alive_after(ours, (B, nh, T, T))
    assert probabilities == 0  # recomputed in backward
    torch.manual_seed(1)
    _, head_sized = _alive_after(ours, (B, nh, T, hd))
    assert head_sized == 1  # the output alone: no contiguous copy of q or k waits for backward
    torch.manual_seed(1)  # the same dropout mask
    reference = attention_module.eager_attention(*heads(), mask, is_causal=kind == "causal", dropout_p=0.3)[0]
    assert torch.equal(y, reference)
    g = torch.randn_like(y)
    (got,) = torch.autograd.grad(y, projected, g)
    (want,) = torch.autograd.grad(reference, projected, g)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    with torch.no_grad():  # no graph: the forward alone
        torch.manual_seed(1)
        assert torch.equal(ours(), y)




def test_dropout_linear_keeps_x_and_the_mask_not_the_dropped_copy():
    from triformers.layers.dropout import dropout, dropout_linear

    torch.manual_seed(0)
    x = torch.randn(4, 5, 16, requires_grad=True)
    A = torch.randn(3, 16, requires_grad=True)
    torch.manual_seed(1)
    y, copies = _alive_after(lambda: dropout_linear(x, A, 0.3, True), tuple(x.shape))
    assert copies == 0  # the dropped x is recomputed in backward
    torch.manual_seed(1)  # the same mask
    reference = F.linear(dropout(x, 0.3, True), A)
    assert torch.equal(y, reference)
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, (x, A), g), torch.autograd.grad(reference, (x, A), g), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert torch.equal(dropout_linear(x, A, 0.3, False), F.linear(x, A))  # eval: no dropout


def test_gated_mlp_recomputes_its_activation_in_backward():
    from types import SimpleNamespace

    from triformers.layers.mlp import MLP

    config = SimpleNamespace(hidden_size=16, intermediate_size=24, gated_mlp=True, activation="gelu_tanh",
                             activation_dropout=0.0, mlp_down_fp32=False, layer_bias=lambda part: False)
    torch.manual_seed(0)
    mlp = MLP(config)
    x = torch.randn(2, 7, 16, requires_grad=True)
    y, inner = _alive_after(lambda: mlp(x), (2, 7, 24))
    assert inner == 1  # act(gate) * up, the input `down` keeps; not act(gate) beside it
    gate, up = F.linear(x, mlp.gate_up.weight).split(24, dim=-1)
    reference = F.linear(F.gelu(gate, approximate="tanh") * up, mlp.down.weight)
    torch.testing.assert_close(y, reference)
    g = torch.randn_like(y)
    params = (x, mlp.gate_up.weight, mlp.down.weight)
    for got, want in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(reference, params, g), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("ignored", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_cross_entropy_equals_linear_then_loss_and_keeps_nothing_vocabulary_sized(ignored, dtype,
                                                                                       monkeypatch):
    from triformers.layers import cross_entropy as module

    monkeypatch.setattr(module, "_CHUNK", 1000)  # rows in chunks of 3: several chunks and a short last one
    torch.manual_seed(0)
    N, d, V = 37, 16, 301
    x = torch.randn(N, d, dtype=dtype, requires_grad=True)
    W = torch.randn(V, d, dtype=dtype, requires_grad=True)
    b = torch.randn(V, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, V, (N,))
    labels[torch.rand(N) < ignored] = -100
    (logits, loss), vocabulary_sized = _alive_after(lambda: module.linear_cross_entropy(x, W, b, labels), (N, V))
    assert vocabulary_sized == 1  # the logits returned, nothing else waits for backward
    ref_logits = F.linear(x, W, b)
    ref_loss = F.cross_entropy(ref_logits.float(), labels)
    assert torch.equal(logits, ref_logits) and loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, equal_nan=True)
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=4e-3, rtol=2e-2)
    for extra in (0.0, 1.0):  # the loss alone, and the loss plus a second term read from the logits
        ours = torch.nan_to_num(loss) + extra * logits.float().pow(2).mean()
        theirs = torch.nan_to_num(ref_loss) + extra * ref_logits.float().pow(2).mean()
        got = torch.autograd.grad(ours, (x, W, b), retain_graph=True)
        want = torch.autograd.grad(theirs, (x, W, b), retain_graph=True)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g.float(), w.float(), **tol)
    xf = x.detach().float().requires_grad_()
    _, loss = module.linear_cross_entropy(xf, torch.randn(V, d), None, labels)  # a frozen head, as under LoRA
    assert _new_tensors_of_shape((N, V), lambda: torch.autograd.grad(loss, xf)) == 0  # backward: none at all
