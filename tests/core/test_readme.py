"""The README's core snippet runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace = {}
        exec(compile(block.replace("/tmp/", f"{tmp_path}/"), str(README), "exec"), namespace)
    assert (tmp_path / "speaker0.pt").exists()
    assert namespace["new_id"].tolist() == [10]
