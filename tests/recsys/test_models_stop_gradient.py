"""Stop-gradient semantics of the gates (PPNet, PEPNet).

The shared embeddings must get exactly the gradient they would get if the gate outputs were
constants: the gate path contributes nothing to them. The gates' own id embeddings, in contrast,
are trained only through the gates. A control run with the detach removed shows the test bites.
"""

import pytest
import torch
from random_batch import random_batch, tiny_spec

import lhuc.gate
from recsys_lhuc.models import build_model

HIDDEN = (16, 8)


def total_loss(out, batch) -> torch.Tensor:
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if isinstance(out, dict):
        return sum(bce(logits, batch[name]) for name, logits in out.items())
    return bce(out, batch["like"])


def randomise_gates(model):
    """Give every gate nonzero output weights so gate outputs really depend on their inputs."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gates" in name or "epnet" in name:
                p.normal_(std=0.3)


def freeze_gate_outputs(model):
    """Make every gate return its output detached (gates act as constants)."""
    for module in model.modules():
        if isinstance(module, (lhuc.GateNN, lhuc.GateBank)):
            original = module.forward

            def detached(*args, _f=original):
                out = _f(*args)
                return [o.detach() for o in out] if isinstance(out, list) else out.detach()
            module.forward = detached


def shared_and_gate_id_grads(model, batch):
    model.zero_grad()
    total_loss(model(batch), batch).backward()
    own = grads_of(model.gate_ids)
    if hasattr(model, "domain_ids"):  # PEPNet: EPNet's own domain embeddings
        own.update({f"domain.{n}": g for n, g in grads_of(model.domain_ids).items()})
    return grads_of(model.embedding), own


def grads_of(module):
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for n, p in module.named_parameters()}


@pytest.mark.parametrize("name,cfg", [
    ("ppnet", {}),
    ("ppnet", {"gate_context": "all", "logit_gate": True}),
    ("ppnet", {"gate_position": "output"}),
    ("pepnet", {"domain_fields": ["occupation"]}),
])
def test_shared_embeddings_get_no_gradient_from_gates(name, cfg):
    spec = tiny_spec()
    batch = random_batch(spec, 32)
    model = build_model(name, spec, hidden=HIDDEN, **cfg)
    randomise_gates(model)
    shared, own = shared_and_gate_id_grads(model, batch)
    assert all(g.abs().sum() > 0 for g in own.values()), "gate id embeddings got no gradient"
    assert all(g.abs().sum() > 0 for g in shared.values())
    freeze_gate_outputs(model)
    shared_frozen, own_frozen = shared_and_gate_id_grads(model, batch)
    for n in shared:
        torch.testing.assert_close(shared[n], shared_frozen[n], rtol=0, atol=0)
    assert all(g.abs().sum() == 0 for g in own_frozen.values())


def test_loss_through_the_gate_only_reaches_gate_ids_not_shared_embeddings():
    spec = tiny_spec()
    batch = random_batch(spec, 16)
    model = build_model("ppnet", spec, hidden=HIDDEN)
    randomise_gates(model)
    parts = model.embedding.field_embeddings(batch)
    scales = model.tower.gates(model.gate_ids(batch),
                               model.embedding.concat(parts, model.context_exclude))
    sum(s.sum() for s in scales).backward()
    assert all(p.grad is None for p in model.embedding.parameters())
    assert all(p.grad.abs().sum() > 0 for p in model.gate_ids.parameters())


def test_control_without_detach_the_gradients_differ(monkeypatch):
    """If the gate context were not detached, shared gradients would change: the test can fail."""
    monkeypatch.setattr(lhuc.gate, "gate_input",
                        lambda personal, context: torch.cat([personal, context], dim=-1))
    spec = tiny_spec()
    batch = random_batch(spec, 32)
    model = build_model("ppnet", spec, hidden=HIDDEN)
    randomise_gates(model)
    shared, _ = shared_and_gate_id_grads(model, batch)
    freeze_gate_outputs(model)
    shared_frozen, _ = shared_and_gate_id_grads(model, batch)
    assert any(not torch.allclose(shared[n], shared_frozen[n]) for n in shared)
