"""End to end: each recipe's train.py trains, resumes, tests and exports a tiny CTC model.

Tiny model and data (a few speakers of speechocean762 and FSDD from ../shared/data, a few
synthetic speakers), so the whole file runs in about a minute on two CPU cores.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from asr_lhuc.data import prepare_synthetic, read_manifest
from asr_lhuc.decode import decode
from asr_lhuc.experiment import run_recipe
from asr_lhuc.pretrained import load_pretrained
from recipes.FSDD.ASR.CTC.fsdd_prepare import prepare_fsdd
from recipes.speechocean762.ASR.CTC.speechocean762_prepare import prepare_speechocean762

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
RECIPES = ROOT / "recipes"
TINY = ["--cnn_channels", "[4, 8]", "--rnn_layers", "1", "--rnn_neurons", "32",
        "--dnn_neurons", "32", "--dropout", "0.0", "--batch_size", "4", "--lr", "0.003",
        "--speed_perturb", "null", "--test_beam_size", "1"]
RESULT_KEYS = {"corpus", "mode", "wer", "cer", "n_utts", "n_speakers", "epochs",
               "train_seconds", "params", "device", "checkpoint", "command"}


def recipe_args(corpus: str, out: Path, *extra: str) -> list[str]:
    return [str(RECIPES / corpus / "ASR/CTC/hparams/train.yaml"), *TINY,
            "--output_folder", str(out), "--results_json", str(out / "results.json"),
            "--pretrained_path", str(out / "pretrained.pt"), *extra]


def logged_epochs(out: Path) -> list[tuple[int, float]]:
    """(epoch, train loss) pairs from SpeechBrain's train_log.txt."""
    text = (out / "train_log.txt").read_text()
    return [(int(e), float(loss)) for e, loss in
            re.findall(r"epoch: (\d+),.*? train loss: ([\d.e+-]+)", text)]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """SI run on a tiny synthetic corpus: 1 epoch, then rerun asking for 3 (a resume)."""
    tmp = tmp_path_factory.mktemp("synthetic")
    data, out = tmp / "data", tmp / "out"
    sizes = ["--data_folder", str(data), "--n_train_speakers", "3", "--n_test_speakers", "2",
             "--utts_per_train_speaker", "8", "--utts_per_test_speaker", "3"]
    first = run_recipe(recipe_args("Synthetic", out, *sizes, "--number_of_epochs", "1"),
                       prepare_synthetic, "train.py")
    after_first = logged_epochs(out)
    second = run_recipe(recipe_args("Synthetic", out, *sizes, "--number_of_epochs", "3"),
                        prepare_synthetic, "train.py")
    return out, first, after_first, second


def test_training_writes_checkpoints_wer_file_and_results(synthetic_run):
    out, first, _, second = synthetic_run
    assert list((out / "save").glob("CKPT+*")), "no checkpoint saved"
    wer_file = (out / "wer_test.txt").read_text()
    assert "%WER" in wer_file
    saved = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(saved)
    assert saved == second
    assert saved["mode"] == "si" and saved["lhuc_params"] == 0
    # The WER SpeechBrain's ErrorRateStats wrote is the one reported (scored by jiwer).
    assert f"%WER {100 * saved['wer']:.2f} " in wer_file
    assert 0.0 < saved["cer"]  # one epoch on a tiny corpus cannot be perfect
    assert saved["n_speakers"] == 2 and saved["n_utts"] == 6
    assert (out / "pretrained.pt").stat().st_size > 10_000


def test_rerun_resumes_at_the_next_epoch_and_loss_falls(synthetic_run):
    out, first, after_first, second = synthetic_run
    assert [e for e, _ in after_first] == [1]
    epochs = logged_epochs(out)
    assert [e for e, _ in epochs] == [1, 2, 3], "the rerun started over instead of resuming"
    assert first["epochs"] == 1 and second["epochs"] == 3
    assert second["train_seconds"] > first["train_seconds"]
    losses = [loss for _, loss in epochs]
    assert losses[-1] < losses[0], f"training loss did not fall: {losses}"


def test_rerun_retests_with_beam_search_and_the_transcript_lm(synthetic_run):
    out, *_ = synthetic_run
    sizes = ["--data_folder", str(out.parent / "data"), "--n_train_speakers", "3",
             "--n_test_speakers", "2", "--utts_per_train_speaker", "8",
             "--utts_per_test_speaker", "3", "--number_of_epochs", "3"]
    args = [str(RECIPES / "Synthetic/ASR/CTC/hparams/train.yaml"), *TINY[:-2],  # not beam 1
            "--test_beam_size", "4", "--lm_order", "2", "--output_folder", str(out),
            "--results_json", str(out / "lm.json"), "--pretrained_path", str(out / "lm.pt"),
            *sizes]
    results = run_recipe(args, prepare_synthetic, "train.py")
    assert results["epochs"] == 3 and results["n_utts"] == 6  # re-tested, not trained
    assert results["decoding"].startswith("beam 4 + 2-gram word LM")
    assert "\\2-grams:" in (out / "lm_train_2gram.arpa").read_text()
    assert json.loads((out / "lm.json").read_text())["wer"] == results["wer"]


def test_pretrained_checkpoint_reloads_and_decodes(synthetic_run):
    out, *_ = synthetic_run
    model, encoder, speakers, hparams = load_pretrained(out / "pretrained.pt")
    assert not model.training and len(speakers) == 3 and "CTCAcousticModel" in hparams
    blob = torch.load(out / "pretrained.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values()
               if v.is_floating_point())
    rows = read_manifest(Path(out).parent / "data" / "test.csv")[:2]
    import soundfile as sf
    wavs = [torch.from_numpy(sf.read(r["wav"], dtype="float32")[0]) for r in rows]
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    lens = torch.tensor([len(w) / batch.shape[1] for w in wavs])
    texts = decode(model, batch, lens, encoder)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert set("".join(texts)) <= set(" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@pytest.mark.skipif(not (DATA / "fsdd" / "speakers.tsv").is_file(),
                    reason=f"FSDD not found at {DATA / 'fsdd'}")
def test_fsdd_sat_lhuc_trains_per_speaker_rows_and_decodes_in_si_mode(tmp_path):
    out = tmp_path / "out"
    prep = ["--prep_folder", str(tmp_path / "data"), "--max_utts", "8"]
    res = run_recipe(recipe_args("FSDD", out, *prep, "--mode", "sat_lhuc",
                                 "--number_of_epochs", "2"), prepare_fsdd, "train.py")
    assert res["mode"] == "sat_lhuc" and res["decoded_in_si_mode"]
    assert res["n_train_speakers"] == 2 and res["n_speakers"] == 4
    assert res["lhuc_params"] == 2 * (2 + 1) * 32  # 2 layers x (2 speakers + SI row) x 32 units
    model, _, speakers, _ = load_pretrained(out / "pretrained.pt")
    assert model.has_lhuc and sorted(speakers.speakers) == ["jackson", "theo"]
    tables = [m for n, m in model.named_modules() if n.endswith("lhuc_table")]
    moved = [float((t.rows.detach() - t.reparam.init_r).abs().max()) for t in tables]
    assert max(moved) > 0, "speaker rows never trained"


@pytest.mark.skipif(not (DATA / "speechocean762" / "train" / "text").is_file(),
                    reason=f"speechocean762 not found at {DATA / 'speechocean762'}")
def test_speechocean762_reports_wer_for_children_and_adults(tmp_path):
    out = tmp_path / "out"
    prep = ["--prep_folder", str(tmp_path / "data"), "--max_speakers", "6", "--max_utts", "3",
            "--n_valid_speakers", "2"]
    res = run_recipe(recipe_args("speechocean762", out, *prep, "--number_of_epochs", "1"),
                     prepare_speechocean762, "train.py")
    test_rows = read_manifest(tmp_path / "data" / "test.csv")
    assert res["n_utts"] == len(test_rows) and res["n_speakers"] == 6
    assert {"wer_children", "wer_adults"} <= set(res)
    assert res["n_utts_children"] + res["n_utts_adults"] == res["n_utts"]


def test_rerun_after_the_time_limit_only_retests(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    sizes = ["--data_folder", str(data), "--n_train_speakers", "3", "--n_test_speakers", "2",
             "--utts_per_train_speaker", "8", "--utts_per_test_speaker", "3",
             "--train_time_limit_minutes", "0.0001", "--number_of_epochs", "5"]
    first = run_recipe(recipe_args("Synthetic", out, *sizes), prepare_synthetic, "train.py")
    second = run_recipe(recipe_args("Synthetic", out, *sizes), prepare_synthetic, "train.py")
    assert first["epochs"] == second["epochs"] == 1
    assert [e for e, _ in logged_epochs(out)] == [1], "the rerun trained past the time limit"
    assert second["wer"] == first["wer"]
