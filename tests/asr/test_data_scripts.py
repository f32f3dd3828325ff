"""The recipe prepare scripts run as plain `python <script> --data_folder ... --save_folder ...`."""

import subprocess
import sys
from pathlib import Path

from asr_lhuc.data import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_prepare_script(tmp_path):
    script = ROOT / "recipes" / "Synthetic" / "ASR" / "CTC" / "synthetic_prepare.py"
    result = subprocess.run(
        [sys.executable, str(script), "--data_folder", str(tmp_path / "audio"),
         "--save_folder", str(tmp_path / "csv"), "--n_train_speakers", "2",
         "--n_test_speakers", "1", "--utts_per_train_speaker", "3",
         "--utts_per_test_speaker", "2", "--n_adapt_utts", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "test_eval:" in result.stdout
    test = read_manifest(tmp_path / "csv" / "test.csv")
    assert len(test) == 2 and Path(test[0]["wav"]).is_relative_to(tmp_path / "audio")
    assert (tmp_path / "csv" / "prep_summary.json").is_file()
