"""The oneDNN linear path: same values and gradients as F.linear, and usable like any autograd output."""

import pytest
import torch
import torch.nn.functional as F

from triformers.layers import linear as linear_module
from triformers.layers.linear import Linear, linear

needs_onednn = pytest.mark.skipif(not linear_module._ONEDNN, reason="this torch build has no oneDNN (mkldnn)")


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
    monkeypatch.setattr(linear_module, "_onednn", lambda *a: calls.append(1) or F.linear(*a))
    with torch.no_grad():
        linear(torch.randn(2, 8), layer.weight, layer.bias)
    assert calls, "CPU inference in fp32 should go through oneDNN"
