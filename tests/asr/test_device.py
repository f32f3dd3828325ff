"""Every ASR path on the model's device: a CUDA GPU where there is one.

The bug this guards against: SpeechBrain's input normalisation keeps its statistics as plain
tensor attributes, so `model.to("cuda")` left them on the CPU, and a checkpoint restored them
there; every decode after a checkpoint load then failed on a GPU. The first two tests show the
mechanism on the CPU with PyTorch's "meta" device (a second device that every machine has); the
others run the real paths on each device: CPU always, CUDA where it exists (skipped here with the
reason; `benchmarks/gpu_check.sh` runs them on a GPU machine).
"""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import lhuc
from asr_lhuc.adapt import (
    AdaptConfig,
    AsrSystem,
    adapt_speakers,
    decode_speakers,
    load_speakers,
    pad_batch,
)
from asr_lhuc.data import prepare_synthetic
from asr_lhuc.decode import decode
from asr_lhuc.experiment import run_recipe
from asr_lhuc.model import CTCAcousticModel
from asr_lhuc.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "recipes" / "Synthetic" / "ASR" / "CTC"
SI_CHECKPOINT = SYNTHETIC / "pretrained" / "si.pt"
TARGETS = ["DNN.block_0.act", "DNN.block_1.act"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device on this machine; benchmarks/gpu_check.sh runs these on a GPU"))]


def tiny_model() -> CTCAcousticModel:
    return CTCAcousticModel(n_tokens=29, n_mels=20, cnn_blocks=1, cnn_channels=(4,),
                            rnn_layers=1, rnn_neurons=16, dnn_blocks=2, dnn_neurons=16,
                            dropout=0.0)


def warmed_statistics(model: CTCAcousticModel) -> CTCAcousticModel:
    model.train()
    model(torch.randn(2, 8000), torch.tensor([1.0, 0.8]))
    return model.eval()


def test_normalisation_statistics_follow_the_model_to_another_device():
    model = warmed_statistics(tiny_model())
    assert model.normalize.glob_mean.numel() == 20
    model.to("meta")
    assert model.normalize.glob_mean.device.type == "meta"
    assert model.normalize.glob_std.device.type == "meta"
    model.to(torch.float64)  # casts reach them too (they are computed with the features)
    assert model.normalize.glob_mean.dtype == torch.float64


def test_statistics_restored_from_a_checkpoint_land_on_the_model_device(tmp_path):
    source = warmed_statistics(tiny_model())
    source.normalize._save(tmp_path / "normalizer.ckpt")  # what the Checkpointer writes
    target = tiny_model().to("meta")  # a Brain moves the modules before it recovers
    target.normalize._load(tmp_path / "normalizer.ckpt")
    assert target.normalize.glob_mean.device.type == "meta"
    assert target.normalize.count == source.normalize.count
    assert target.normalize.glob_std.shape == source.normalize.glob_std.shape


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny synthetic corpus: 3 training and 2 test speakers."""
    root = tmp_path_factory.mktemp("device_data")
    prepare_synthetic(root, root, n_train_speakers=3, n_test_speakers=2,
                      utts_per_train_speaker=6, utts_per_test_speaker=4, n_adapt_utts=2)
    return root


@pytest.mark.parametrize("device", DEVICES)
def test_core_attach_identities_and_fold_on(device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(),
                          nn.Linear(12, 3)).to(device)
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=["1", "3"]),
                     example_inputs=(torch.zeros(1, 6, device=device),))
    new = lhuc.add_identities(model, 1)
    with torch.no_grad():
        for table in lhuc.lhuc_tables(model).values():
            table.rows.normal_(0, 1)
    x = torch.randn(4, 6, device=device)
    ids = torch.tensor([0, 1, int(new[0]), -1])  # ids on the CPU, as a data loader gives them
    with lhuc.identities(model, ids):
        out = model(x)
    assert out.device.type == torch.device(device).type
    for table in lhuc.lhuc_tables(model).values():
        assert table.rows.device.type == torch.device(device).type
    with lhuc.identities(model, torch.zeros(4, dtype=torch.long)):
        speaker0 = model(x)
    folded = lhuc.fold_lhuc(model, identity=0, into={"1": "2", "3": "4"})
    assert torch.allclose(folded(x), speaker0, atol=1e-5)
    loss = out.square().mean()
    loss.backward()
    assert all(p.grad is not None for p in lhuc.lhuc_parameters(model))


@pytest.mark.parametrize("device", DEVICES)
def test_committed_checkpoint_decodes_on(device, synthetic):
    model, encoder, _, _ = load_pretrained(SI_CHECKPOINT, device)
    assert model.normalize.glob_mean.device.type == torch.device(device).type
    utts = [u for us in load_speakers(synthetic / "test.csv").values() for u in us][:3]
    wavs, lens = pad_batch(utts)
    texts = decode(model, wavs, lens, encoder)
    reference, _, _, _ = load_pretrained(SI_CHECKPOINT, "cpu")
    assert texts == decode(reference, wavs, lens, encoder)
    assert any(texts), "the committed SI model decoded nothing"


@pytest.mark.parametrize("device", DEVICES)
def test_train_resume_init_from_and_decode_on(device, synthetic, tmp_path):
    """From scratch (1 epoch), resumed (to 2), then SAT-LHUC initialised from that model: each
    ends in the Brain's test decoding after a checkpoint load, the step that crashed on CUDA."""
    tiny = ["--cnn_channels", "[4, 8]", "--rnn_layers", "1", "--rnn_neurons", "16",
            "--dnn_neurons", "16", "--batch_size", "4", "--speed_perturb", "null",
            "--test_beam_size", "1", "--device", device, "--data_folder", str(synthetic),
            "--n_train_speakers", "3", "--n_test_speakers", "2",
            "--utts_per_train_speaker", "6", "--utts_per_test_speaker", "4"]

    def train(out: Path, *extra: str) -> dict:
        return run_recipe([str(SYNTHETIC / "hparams" / "train.yaml"), *tiny,
                           "--output_folder", str(out), "--results_json",
                           str(out / "results.json"), "--pretrained_path",
                           str(out / "model.pt"), *extra], prepare_synthetic, "train.py")

    si = tmp_path / "si"
    assert train(si, "--number_of_epochs", "1")["epochs"] == 1
    resumed = train(si, "--number_of_epochs", "2")
    assert resumed["epochs"] == 2 and torch.device(device).type in resumed["device"]
    sat = train(tmp_path / "sat", "--mode", "sat_lhuc", "--init_from", str(si / "model.pt"),
                "--number_of_epochs", "1")
    assert sat["mode"] == "sat_lhuc" and sat["n_utts"] == 8
    model, _, speakers, _ = load_pretrained(tmp_path / "sat" / "model.pt", device)
    assert model.has_lhuc and len(speakers) == 3


@pytest.mark.parametrize("protocol", ["transductive", "held_out"])
@pytest.mark.parametrize("device", DEVICES)
def test_adaptation_batched_loop_online_and_oracle_on(device, protocol, synthetic, tmp_path):
    from asr_lhuc.adapt.recipe import run

    hp = {"corpus": "synthetic", "seed": 1, "device": device,
          "si_checkpoint": str(SI_CHECKPOINT), "sat_checkpoint": str(SI_CHECKPOINT),
          "lhuc_targets": TARGETS, "test_csv": str(synthetic / "test.csv"),
          "protocol": protocol, "mode": "batched", "compare_loop": True,
          "systems": ["si", "si_lhuc", "si_lhuc_online", "si_lhuc_oracle"],
          "adapt": {"lr": 0.05, "epochs": 2, "batch_size": 4},
          "output_folder": str(tmp_path / "exp"), "results_folder": str(tmp_path / "res")}
    payload = run(hp, None, "pytest")
    saved = json.loads((tmp_path / "res" / "adapt.json").read_text())
    assert saved["device"] == device and payload["n_speakers"] == 2
    assert saved["loop_seconds"] > 0 and saved["batched_seconds"] > 0
    # the batched and the per-speaker loop adapt the same rows: the same second pass
    assert saved["loop_wer"] == pytest.approx(saved["si_lhuc"]["wer"], abs=1e-9)

    model, encoder, _, _ = load_pretrained(SI_CHECKPOINT)
    model.attach_speaker_lhuc(TARGETS, 0)
    system = AsrSystem(model, encoder, device=device)
    speakers = load_speakers(synthetic / "test.csv")
    info = adapt_speakers(system, speakers, AdaptConfig(lr=0.05, epochs=2, batch_size=4))
    rows = [t.rows.detach() for t in lhuc.lhuc_tables(system.model).values()]
    assert all(r.device.type == torch.device(device).type for r in rows)
    moved = max(float((r - lhuc.get_reparam("2sigmoid").init_r).abs().max()) for r in rows)
    assert moved > 0, "no row moved"
    hyps = decode_speakers(system, speakers, info["rows"])
    assert sorted(hyps) == sorted(speakers)


@pytest.mark.parametrize("device", DEVICES)
def test_ensemble_command_runs_its_models_on(device, synthetic, tmp_path):
    """`--device` of the decoding commands (ensemble; rescore and lm_tuning share its first
    pass, `utterance_log_probs`, and the option): the models run there, scores come back."""
    from recipes.speechocean762.ASR.CTC.local.ensemble import main

    out = tmp_path / "ensemble.json"
    main(["--checkpoints", str(SI_CHECKPOINT), str(SI_CHECKPOINT), "--test_csv",
          str(synthetic / "test.csv"), "--out", str(out), "--beam_size", "1",
          "--device", device])
    res = json.loads(out.read_text())
    assert res["device"].startswith(device) and res["greedy"]["n_utts"] == 8
    # two copies of one model: their average is that model, on any device
    assert res["greedy"]["wer"] == pytest.approx(res["single_models_greedy"][0]["wer"])


def test_gpu_check_script_runs_its_steps_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py at tiny size: what a GPU machine runs, so CI notices a break."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check",
                                                  ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu_check.json"
    gpu_check.main(["--device", "cpu", "--tiny", "--skip_tests", "--epochs", "1",
                    "--repeats", "1", "--work", str(tmp_path / "work"), "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["device"].startswith("cpu") and saved["training"]["epochs"] == 1
    assert saved["training"]["epoch_seconds"] > 0 and saved["training"]["n_test_utts"] == 8
    adaptation = saved["adaptation"]
    assert adaptation["n_speakers"] == 2 and adaptation["warmup"]
    assert adaptation["loop_seconds"] > 0 and adaptation["batched_seconds"] > 0
    assert saved["batched_over_loop_speedup"] == pytest.approx(
        adaptation["loop_seconds"] / adaptation["batched_seconds"])
    # loop and batched are two schedules of the same adaptation: the same second pass
    assert adaptation["wer_after"]["loop"] == pytest.approx(adaptation["wer_after"]["batched"],
                                                            abs=0.15)
