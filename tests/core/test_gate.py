"""Gate networks: start at 1, stop-gradient into the context, fused == separate."""

import pytest
import torch
from torch import nn

from lhuc import GateBank, GateNN


def test_gate_output_starts_at_one():
    gate = GateNN(in_dim=12, out_dim=7, hidden_dim=16)
    out = gate(torch.randn(5, 4), torch.randn(5, 8))
    assert torch.allclose(out, torch.ones(5, 7))


def test_gate_range_is_zero_to_scale():
    gate = GateNN(3, 4, scale=2.0)
    with torch.no_grad():
        gate.fc2.weight.normal_(0, 50)
    out = gate(torch.randn(256, 3))
    assert out.min() >= 0 and out.max() <= 2 and out.max() > 1.9 and out.min() < 0.1


def test_scale_must_allow_one():
    with pytest.raises(ValueError, match="scale"):
        GateNN(3, 4, scale=1.0)


def test_gradient_reaches_personal_embeddings_but_not_detached_context():
    personal_table, shared_table = nn.Embedding(10, 4), nn.Embedding(10, 8)
    gate = GateNN(12, 6)
    with torch.no_grad():  # move off the zero init so every path carries gradient
        gate.fc2.weight.normal_()
    ids = torch.tensor([1, 2, 3])
    gate(personal_table(ids), shared_table(ids)).sum().backward()
    assert personal_table.weight.grad[ids].abs().sum() > 0
    assert shared_table.weight.grad is None
    assert gate.fc1.weight.grad[:, 4:].abs().sum() > 0  # the gate still reads the context


def test_fused_bank_equals_separate_gates():
    torch.manual_seed(0)
    bank = GateBank(10, [8, 4, 6], hidden_dim=12, fused=False)
    with torch.no_grad():
        for fc in bank.fc2s:
            fc.weight.normal_()
    fused = bank.to_fused()
    assert fused.fused and hasattr(fused, "fc1")
    personal, context = torch.randn(5, 3), torch.randn(5, 7)
    for a, b in zip(bank(personal, context), fused(personal, context)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-6)


def test_bank_starts_at_one_for_each_layer():
    outs = GateBank(6, [5, 3])(torch.randn(2, 6))
    assert [o.shape for o in outs] == [(2, 5), (2, 3)]
    assert all(torch.allclose(o, torch.ones_like(o)) for o in outs)
