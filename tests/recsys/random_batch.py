"""Random batches that match a spec: for shape, gradient and throughput checks, not for learning."""

import torch

from recsys_lhuc.spec import FeatureSpec, Field


def random_batch(spec: FeatureSpec, batch_size: int, generator: torch.Generator | None = None,
                 device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Ids uniform over each vocabulary (OOV id 0 included), standard-normal numerics,
    multi fields with a random number of non-padding ids, and 0/1 labels."""
    g = generator or torch.Generator().manual_seed(0)
    batch = {f.name: torch.randint(0, f.vocab_size, (batch_size,), generator=g)
             for f in spec.categorical}
    for f in spec.multi:
        ids = torch.randint(1, f.vocab_size, (batch_size, f.max_len), generator=g)
        lengths = torch.randint(0, f.max_len + 1, (batch_size, 1), generator=g)
        batch[f.name] = ids * (torch.arange(f.max_len) < lengths)
    batch.update({name: torch.randn(batch_size, generator=g) for name in spec.numeric})
    batch.update({name: torch.randint(0, 2, (batch_size,), generator=g).float()
                  for name in spec.labels})
    return {k: v.to(device) for k, v in batch.items()}


def tiny_spec() -> FeatureSpec:
    """A small spec with every kind of field (two tasks, two personal ids) for tests and demos."""
    return FeatureSpec(
        categorical=[Field("user_id", 20, 8), Field("item_id", 30, 8), Field("occupation", 5, 4)],
        numeric=["age"], multi=[Field("genres", 10, 4, max_len=3)], label="like",
        extra_labels=["watch"], personal_ids=["user_id", "item_id"], user_field="user_id")
