"""Use the LHUC core in your own model: attach, adapt per identity, save, fold.

A toy task in which each "speaker" sees the inputs through its own per-dimension gain. A shared
MLP is trained on six speakers (speaker-independent, SI); two new speakers then get their own
LHUC rows, learned from a little of their data with every other weight frozen. Runs in seconds.
"""

import tempfile

import torch
from torch import nn

import lhuc

DIM, CLASSES, TRAIN_SPEAKERS, NEW_SPEAKERS = 16, 10, 6, 2


def speaker_gains() -> torch.Tensor:
    """Training speakers vary mildly; the new speakers lie well outside that range."""
    gen = torch.Generator().manual_seed(2)
    mild = 0.9 + 0.2 * torch.rand(TRAIN_SPEAKERS, DIM, generator=gen)
    strong = 0.25 + 3.0 * torch.rand(NEW_SPEAKERS, DIM, generator=gen)
    return torch.cat([mild, strong])


def make_data(speakers: list[int], n_per_speaker: int, seed: int):
    """Class centres seen through each speaker's gains, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, DIM, generator=torch.Generator().manual_seed(1))
    spk = torch.tensor(speakers).repeat_interleave(n_per_speaker)
    labels = torch.randint(0, CLASSES, (len(spk),), generator=gen)
    x = (centres[labels] + 0.8 * torch.randn(len(spk), DIM, generator=gen)) * speaker_gains()[spk]
    return x, labels, spk


def train(model, params, data, steps=300, lr=1e-2, use_ids=True):
    x, y, spk = data
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(steps):
        with lhuc.identities(model, spk if use_ids else None):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def accuracy(model, data, use_ids=True) -> float:
    x, y, spk = data
    model.eval()
    with torch.no_grad(), lhuc.identities(model, spk if use_ids else None):
        return (model(x).argmax(-1) == y).float().mean().item()


def main() -> dict:
    torch.manual_seed(0)
    new = list(range(TRAIN_SPEAKERS, TRAIN_SPEAKERS + NEW_SPEAKERS))
    train_data = make_data(list(range(TRAIN_SPEAKERS)), 200, seed=3)
    adapt_data, test_data = make_data(new, 100, seed=4), make_data(new, 200, seed=5)

    model = nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, CLASSES))
    # PPNet-style placement: LHUC scales the input of each Linear layer (the first one sees the
    # raw features, the others the ReLU outputs). Widths are read off the Linear layers.
    config = lhuc.LHUCConfig(num_ids=TRAIN_SPEAKERS, target_classes=(nn.Linear,),
                             position="input")
    lhuc.attach_lhuc(model, config)

    si_params = [p for n, p in model.named_parameters() if "lhuc_table" not in n]
    train(model, si_params, train_data, use_ids=False)  # SI training: the SI row for everyone
    si_acc = accuracy(model, test_data, use_ids=False)

    lhuc.add_identities(model, NEW_SPEAKERS)  # rows 6 and 7, at amplitude 1
    train(model, lhuc.freeze_non_lhuc(model), adapt_data, steps=150)  # only the LHUC rows learn
    adapted_acc = accuracy(model, test_data)

    with tempfile.TemporaryDirectory() as tmp:
        size = lhuc.save_adapter(model, f"{tmp}/speaker6.pt", identity=new[0]).stat().st_size
    # Fold speaker 6 into the columns of the Linear layers it scales: a plain MLP again.
    folded = lhuc.fold_lhuc(model, identity=new[0])
    x6 = test_data[0][test_data[2] == new[0]]
    with torch.no_grad(), lhuc.identities(model, torch.full((len(x6),), new[0])):
        fold_gap = (folded(x6) - model(x6)).abs().max().item()

    print(f"new speakers, SI model accuracy      {si_acc:.3f}")
    print(f"new speakers, LHUC-adapted accuracy  {adapted_acc:.3f}")
    print(f"one speaker's adapter file           {size} bytes")
    print(f"folded vs hooked model, max |diff|   {fold_gap:.1e}")
    return {"si_acc": si_acc, "adapted_acc": adapted_acc, "fold_gap": fold_gap}


if __name__ == "__main__":
    main()
