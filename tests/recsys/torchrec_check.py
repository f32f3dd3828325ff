"""Shard a model's embedding tables with TorchRec DistributedModelParallel and train a few steps.

    torchrun --standalone --nproc_per_node 2 tests/recsys/torchrec_check.py --out DIR

Each rank keeps an unsharded pure-PyTorch copy of the model as the reference and trains it on
all ranks' batches concatenated. It writes DIR/rank<r>.json with the sharding plan and the
largest difference between the sharded and the reference model's logits on a probe batch,
before and after training.
"""

import argparse
import copy
import json
from pathlib import Path

import torch
import torch.distributed as dist
from random_batch import random_batch, tiny_spec

from recsys_lhuc.distributed.ddp import cleanup, init_distributed
from recsys_lhuc.distributed.torchrec_embedding import (
    TorchRecFeatureEmbedding,
    cpu_sharding_constraints,
    load_unsharded_state,
    to_torchrec,
)
from recsys_lhuc.models import build_model

LR = 0.1


def bce(logits, batch):
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["like"])


def shard(model, world_size: int, sharding_type: str, device: torch.device):
    """Plan and wrap `model` in DistributedModelParallel; the tables' SGD runs inside backward."""
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    for m in model.modules():
        if isinstance(m, TorchRecFeatureEmbedding):
            # TorchRec divides the tables' gradients by the world size (gradient_division), as
            # DDP averages the dense ones, so one lr gives the step of the mean loss everywhere.
            apply_optimizer_in_backward(torch.optim.SGD, m.ebc.parameters(), {"lr": LR})
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=world_size, compute_device=device.type),
        constraints=cpu_sharding_constraints(model, sharding_type))
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    return DistributedModelParallel(model, device=device, plan=plan, sharders=sharders), plan


def local_table_shards(model) -> dict[str, list[list[int]]]:
    """{table key: [shard sizes]} of the table shards this rank holds."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor
    return {k.removeprefix("module."): [list(s.metadata.shard_sizes) for s in v.local_shards()]
            for k, v in model.state_dict().items()
            if isinstance(v, ShardedTensor) and v.local_shards()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sharding-type", default="table_wise")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = init_distributed()
    spec = tiny_spec()
    torch.manual_seed(0)
    reference = build_model("ppnet", spec, hidden=(16, 8))
    unsharded = to_torchrec(copy.deepcopy(reference), spec)
    weights = {k: v.clone() for k, v in unsharded.state_dict().items()}
    model, plan = shard(unsharded, info.world_size, args.sharding_type, info.device)
    load_unsharded_state(model, weights)
    probe = random_batch(spec, 32, torch.Generator().manual_seed(99))
    with torch.no_grad():
        initial = reference(probe)
        diff_before = (model(probe) - initial).abs().max().item()

    from torchrec.optim.keyed import KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter
    dense_opt = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(model.named_parameters())),
                                      lambda params: torch.optim.SGD(params, lr=LR))
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    batches = [[random_batch(spec, args.batch_size, torch.Generator().manual_seed(100 * r + s))
                for s in range(args.steps)] for r in range(info.world_size)]
    for step in range(args.steps):
        dense_opt.zero_grad()
        mine = batches[info.rank][step]
        bce(model(mine), mine).backward()
        dense_opt.step()
        joint = {k: torch.cat([b[step][k] for b in batches]) for k in mine}
        ref_opt.zero_grad()
        bce(reference(joint), joint).backward()
        ref_opt.step()
    with torch.no_grad():
        after, ref_after = model(probe), reference(probe)
    result = {"rank": info.rank, "world_size": info.world_size,
              "sharding_type": args.sharding_type, "plan": str(plan),
              "local_table_shards": local_table_shards(model),
              "max_logit_diff_before": diff_before,
              "max_logit_diff_after": (after - ref_after).abs().max().item(),
              "logit_change_from_training": (ref_after - initial).abs().max().item()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rank{info.rank}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "plan"}))
    cleanup()


if __name__ == "__main__":
    main()
