"""The findings driver's grid of runs (no data: the recipe runs are faked): names, overrides, no
run twice, the data-amount rows' max_adapt_seconds under both protocols, the corrupted-oracle
rows' clean oracle, and the row numbers."""

import json
from argparse import Namespace

import pytest

from asr_lhuc.adapt import AdaptConfig
from recipes.speechocean762.ASR.CTC.local import own_first_pass_findings as findings

BASE_ADAPT = {"si_kl": 0.7}
LAYERS = ["projection.act", "DNN.block_0.act", "DNN.block_1.act"]


def grid(sweeps=("a", "b", "c", "d")):
    return findings.build_grid(list(sweeps), BASE_ADAPT, findings.yaml_layers())


def test_the_layers_are_the_yamls_head_layers_bottom_to_top():
    assert findings.yaml_layers() == LAYERS


def test_every_run_has_its_own_name_and_settings_and_every_row_a_run():
    runs, rows = grid()
    settings = {json.dumps([r.adapt, r.changes], sort_keys=True) for r in runs.values()}
    assert len(settings) == len(runs)  # no setting runs twice under two names
    assert all(name == run.name for name, run in runs.items())
    assert {r.run for r in rows} == set(runs)
    labels = [(r.sweep, r.label) for r in rows]
    assert len(labels) == len(set(labels))
    # the base (all layers, 2sigmoid, all data, own first pass) is shared by all four sweeps
    assert runs["base"].adapt == BASE_ADAPT and runs["base"].changes == {}
    assert {r.sweep for r in rows if r.run == "base"} == {"a", "b", "c", "d"}
    for run in runs.values():  # every run starts from the base candidate's settings
        assert run.adapt.items() >= BASE_ADAPT.items()
        AdaptConfig.from_dict(run.adapt)  # a key AdaptConfig does not know would fail here


def test_layer_and_reparam_rows_change_only_their_own_yaml_key():
    runs, rows = grid(["a", "c"])
    by_label = {r.label: runs[r.run] for r in rows}
    for layer in LAYERS:
        assert by_label[f"{layer} only"].changes == {"lhuc_targets": [layer]}
        assert by_label[f"{layer} only"].adapt == BASE_ADAPT
    assert by_label[f"all 3 ({', '.join(LAYERS)})"].name == "base"
    assert by_label["2sigmoid"].name == "base"
    for reparam in ("exp", "identity", "relu"):
        assert by_label[reparam].changes == {"lhuc_reparam": reparam}
    assert "sigmoid" not in by_label  # starts at amplitude 0.5: not an unadapted SI model


def fake_payload(protocol: str, adapt: dict, changes: dict, si=0.40, adapted=0.38, oracle=0.30):
    systems = changes.get("systems", ["si", "si_lhuc", "si_lhuc_oracle"])
    wers = {"si": si, "si_lhuc": adapted, "si_lhuc_oracle": oracle}
    per_speaker = {s: {"a": wers[s], "b": si, "c": si + (0.1 if s != "si" else 0)}
                   for s in systems}
    payload = {s: {"wer": wers[s], "cer": wers[s] / 2, "n_utts": 50} for s in systems}
    payload.update(protocol=protocol, n_speakers=3, per_speaker_wer=per_speaker,
                   adapt_config={**AdaptConfig().to_dict(), **adapt},
                   lhuc_targets_si=changes.get("lhuc_targets", LAYERS),
                   lhuc_reparam_si=changes.get("lhuc_reparam", "2sigmoid"),
                   target_quality={s: {"wer": 0.2, "cer": 0.1, "n_utts": 50}
                                   for s in systems if s != "si"})
    return payload


def test_each_run_runs_once_per_protocol_and_the_data_rows_carry_their_budget(tmp_path,
                                                                            monkeypatch):
    calls = []

    def run_configuration(out, split, protocol, args, adapt, changes=None, label=""):
        calls.append((str(out), split, protocol, adapt, changes))
        return fake_payload(protocol, adapt, changes or {})

    monkeypatch.setattr(findings, "run_configuration", run_configuration)
    runs, rows = grid(["b", "d"])
    args = Namespace(work=str(tmp_path), split="valid")
    written = []
    results = findings.run_grid(runs, rows, args, written.append)
    assert len(calls) == len({c[0] for c in calls}) == 2 * len(runs)  # each folder once
    assert {(c[0].split("/")[-2], c[2]) for c in calls} == {
        (n, p) for n in runs for p in ("transductive", "held_out")}
    assert all(c[1] == "valid" and c[0].startswith(f"{tmp_path}/valid/") for c in calls)
    assert len(results) == 2 * len(rows) and written[-1] == results
    budget = {(r["label"], r["protocol"]): r["settings"]["adapt"]["max_adapt_seconds"]
              for r in results if r["sweep"] == "b"}
    assert budget == {(label, p): seconds for label, seconds in
                      (("10 s", 10), ("30 s", 30), ("60 s", 60), ("all", None))
                      for p in ("transductive", "held_out")}
    noisy = [r for r in results if r["label"] == "oracle, noise 0.3"]
    assert {r["protocol"] for r in noisy} == {"transductive", "held_out"}
    for row in noisy:  # adapted on corrupted transcripts; the oracle column is the clean one
        assert row["settings"]["adapt"]["target_noise"] == 0.3
        assert row["settings"]["adapt"]["targets"] == "oracle"
        assert row["adapted"]["wer"] == 0.30 and row["oracle"]["wer"] == 0.30
        assert row["settings"]["adapted_system"] == "si_lhuc_oracle"


def test_row_numbers():
    payload = fake_payload("held_out", BASE_ADAPT, {}, si=0.40, adapted=0.38, oracle=0.30)
    row = findings.row_result(findings.Row("a", "all", "base"), payload, payload)
    assert row["relative_wer_change"] == pytest.approx(-0.05)
    assert row["oracle_relative_wer_change"] == pytest.approx(-0.25)
    assert row["share_of_oracle_gain"] == pytest.approx(0.2)
    # speakers: a 0.40 -> 0.38 better, b unchanged, c 0.40 -> 0.50 worse
    assert row["speakers"] == {"improved": 1, "unchanged": 1, "worse": 1, "n": 3}
    assert row["target_quality"] == {"wer": 0.2, "cer": 0.1, "n_utts": 50}
    assert row["settings"]["adapt"]["si_kl"] == 0.7 and row["protocol"] == "held_out"


def test_unknown_sweep_is_refused():
    with pytest.raises(ValueError, match="unknown sweep 'z'"):
        findings.build_grid(["z"], BASE_ADAPT, LAYERS)


def test_the_fixed_update_rows_differ_from_the_data_rows_only_in_steps_per_speaker():
    runs, rows = grid(["b", "e"])
    data = {r.label: runs[r.run].adapt for r in rows if r.sweep == "b"}
    fixed = {r.label: runs[r.run].adapt for r in rows if r.sweep == "e"}
    assert len(fixed) == 4 and len({json.dumps(a, sort_keys=True) for a in fixed.values()}) == 4
    for seconds in (10, 30, 60):
        both = fixed[f"{seconds} s, {findings.FIXED_STEPS} steps"]
        assert both == {**data[f"{seconds} s"], "steps_per_speaker": findings.FIXED_STEPS}
    assert fixed[f"all s, {findings.FIXED_STEPS} steps"]["max_adapt_seconds"] is None
    for adapt in fixed.values():
        AdaptConfig.from_dict(adapt)
