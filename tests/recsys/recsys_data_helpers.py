"""Small configs shared by the data and training tests (tiny, so the suite stays fast)."""
import copy
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data"

TINY_SYNTHETIC = {
    "data": {"source": "synthetic",
             "synthetic": {"n_users": 150, "n_items": 60, "rows_per_user": 24, "n_groups": 4,
                           "n_features": 4, "seed": 1},
             "split": {"protocol": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0}},
    "spec": {"categorical": [{"name": "user_id", "embed_dim": 8},
                             {"name": "item_id", "embed_dim": 8},
                             {"name": "user_segment", "embed_dim": 4}],
             "numeric": ["f0", "f1", "f2", "f3"], "multi": [], "label": "click",
             "personal_ids": ["user_id"], "user_field": "user_id"},
    "model": {"name": "dnn", "hidden": [16, 8]},
    "train": {"epochs": 3, "batch_size": 128, "lr": 0.01, "patience": 5, "progress": False},
}


def tiny_config(tmp_path, **sections) -> dict:
    """TINY_SYNTHETIC with its Arrow cache under tmp_path and some sections updated."""
    cfg = copy.deepcopy(TINY_SYNTHETIC)
    cfg["data"]["cache_dir"] = str(tmp_path / "cache")
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def ml100k_folder() -> Path:
    """The ML-100K folder from the shared fetch script; skip the test when it cannot be had."""
    script = SHARED / "get_ml100k.sh"
    if not script.exists() or shutil.which("bash") is None:
        pytest.skip(f"ML-100K fetch script {script} absent")
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip(f"get_ml100k.sh failed: {out.stderr.strip()[-300:]}")
    return Path(out.stdout.strip().splitlines()[-1])
