"""The own-first-pass protocol driver: settings are chosen on the dev speakers only, and the
test speakers are scored with the chosen setting and the plain-LHUC baseline, nothing else."""

import argparse
import json

import pytest

from recipes.speechocean762.ASR.CTC.local import own_first_pass


def fake_row(si: float, adapted: float) -> dict:
    return {"si": {"wer": si}, "si_lhuc": {"wer": adapted}, "si_lhuc_oracle": {"wer": si - .1},
            "n_speakers": 5, "speakers_improved": 3, "relative_wer_change": (adapted - si) / si}


def test_the_setting_is_chosen_on_dev_and_only_it_and_the_baseline_reach_test(tmp_path,
                                                                             monkeypatch):
    dev_wer = {"lhuc": (0.40, 0.40), "blhuc_prior0.3": (0.36, 0.39), "si_kl0.3": (0.35, 0.41)}
    calls = []

    def adapt_once(name, split, protocol, args):
        calls.append((name, split, protocol))
        if split == "valid":
            return fake_row(0.40, dev_wer[name][own_first_pass.PROTOCOLS.index(protocol)])
        return fake_row(0.30, 0.29)

    monkeypatch.setattr(own_first_pass, "adapt_once", adapt_once)
    out = tmp_path / "ofp.json"
    result = own_first_pass.main(["--out", str(out), "--candidates", *dev_wer])
    # mean relative change: blhuc -6.25%, si_kl -7.5%+2.5% = -2.5%, lhuc 0
    assert result["chosen"] == "blhuc_prior0.3"
    tested = {(n, p) for n, s, p in calls if s == "test"}
    assert tested == {(n, p) for n in ("lhuc", "blhuc_prior0.3")
                      for p in own_first_pass.PROTOCOLS}
    saved = json.loads(out.read_text())
    assert saved["chosen"] == "blhuc_prior0.3" and set(saved["test"]) == {"lhuc", "blhuc_prior0.3"}
    assert saved["candidates"]["blhuc_prior0.3"] == {"prior_std": 0.3}
    assert "own_first_pass" in saved["command"] and "valid" in saved["dev_set"]


def test_dev_only_runs_the_named_candidates_on_valid_and_never_on_test(tmp_path, monkeypatch):
    calls = []

    def adapt_once(name, split, protocol, args):
        calls.append((name, split, protocol))
        return fake_row(0.40, 0.38)

    monkeypatch.setattr(own_first_pass, "adapt_once", adapt_once)
    out = tmp_path / "dev.json"
    names = ["nbest5", "entropy", "ctc_entropy0.3"]
    result = own_first_pass.main(["--out", str(out), "--candidates", *names, "--dev_only"])
    assert calls == [(n, "valid", p) for n in names for p in own_first_pass.PROTOCOLS]
    assert result["test"] == {} and result["chosen"] is None
    saved = json.loads(out.read_text())
    assert set(saved["dev"]) == set(names) and saved["candidates"]["nbest5"] == {"nbest": 5}


def test_unknown_candidates_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        own_first_pass.main(["--out", str(tmp_path / "x.json"), "--candidates", "nbest9"])
    assert "nbest9" in capsys.readouterr().err


def test_a_run_is_read_back_not_rerun_and_a_stale_one_is_refused(tmp_path, monkeypatch):
    runs = []

    def fake_run(hp, prepare_fn, command):
        runs.append(hp)
        payload = {"adapt_config": dict(hp["adapt"]), "protocol": hp["protocol"],
                   "lhuc_targets_si": hp["lhuc_targets"], "lhuc_reparam_si": hp["lhuc_reparam"]}
        (tmp_path / "run" / "adapt.json").write_text(json.dumps(payload))
        return payload

    monkeypatch.setattr(own_first_pass, "run", fake_run)
    (tmp_path / "run").mkdir()
    args = argparse.Namespace(prep_folder=str(tmp_path), si_checkpoint="si.pt",
                              feature_cache_dir="features", threads=1)
    changes = {"lhuc_targets": ["DNN.block_1.act"], "lhuc_reparam": "exp"}
    first = own_first_pass.run_configuration(tmp_path / "run", "valid", "held_out", args,
                                             {"si_kl": 0.7}, changes, "pytest")
    again = own_first_pass.run_configuration(tmp_path / "run", "valid", "held_out", args,
                                             {"si_kl": 0.7}, changes, "pytest")
    assert len(runs) == 1 and first == again
    hp = runs[0]  # the YAML's adapt block with the changes on top, the other keys set
    assert hp["adapt"]["si_kl"] == 0.7 and hp["adapt"]["lr"] == 0.02
    assert hp["lhuc_targets"] == ["DNN.block_1.act"] and hp["lhuc_reparam"] == "exp"
    assert hp["test_csv"] == str(tmp_path / "valid.csv") and hp["protocol"] == "held_out"
    for adapt, other, protocol in (({"si_kl": 0.3}, changes, "held_out"),
                                   ({"si_kl": 0.7}, {"lhuc_reparam": "relu"}, "held_out"),
                                   ({"si_kl": 0.7}, changes, "transductive")):
        with pytest.raises(ValueError, match="adapt.json was made with other settings"):
            own_first_pass.run_configuration(tmp_path / "run", "valid", protocol, args, adapt,
                                             other, "pytest")
    assert len(runs) == 1


def test_the_dev_split_can_have_its_own_csvs_and_si_model(tmp_path, monkeypatch):
    """Settings are chosen with a model that never saw the dev speakers; test uses the SI model."""
    seen = []

    def adapt_once(name, split, protocol, args):
        seen.append((split, args.prep_folder, args.si_checkpoint))
        return fake_row(0.40, 0.39)

    monkeypatch.setattr(own_first_pass, "adapt_once", adapt_once)
    saved = own_first_pass.main(["--out", str(tmp_path / "o.json"), "--candidates", "lhuc",
                                 "--prep_folder", "full", "--si_checkpoint", "si.pt",
                                 "--dev_prep_folder", "dev25", "--dev_si_checkpoint", "dev.pt"])
    assert {s for s in seen if s[0] == "valid"} == {("valid", "dev25", "dev.pt")}
    assert {s for s in seen if s[0] == "test"} == {("test", "full", "si.pt")}
    assert saved["dev_si_checkpoint"] == "dev.pt" and "dev25" in saved["dev_set"]
