"""Read a CTranslate2 ``model.bin`` (the format faster-whisper models ship in) into tensors.

The file is a flat list of named arrays after a small header; reading it needs no CTranslate2
install, so a Whisper encoder converted for CTranslate2 can run (and be trained through) in
PyTorch. Layout (little-endian): u32 version, [u16-length spec name], [u32 spec revision],
u32 variable count, then per variable: u16-length name, u8 rank, rank x u32 dims, u8 dtype,
u32 byte count, data; aliases follow and are not needed here.
"""

import struct
from pathlib import Path

import numpy as np
import torch

# CTranslate2's DataType enum, in order.
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _string(f) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n).rstrip(b"\0").decode()


def read_ct2_variables(path: str | Path, prefix: str = "") -> tuple[str, dict[str, torch.Tensor]]:
    """Return (spec name, {variable name: tensor}) for the variables whose names start with
    `prefix` (others are skipped without being read)."""
    path = Path(path)
    variables = {}
    with path.open("rb") as f:
        (version,) = struct.unpack("<I", f.read(4))
        if version < 4:
            raise ValueError(f"{path}: CTranslate2 model format {version} is too old (need >= 4);"
                             " convert the model again with a recent ct2-transformers-converter")
        spec = _string(f)
        f.read(4)  # spec revision
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            name = _string(f)
            (rank,) = struct.unpack("<B", f.read(1))
            dims = struct.unpack(f"<{rank}I", f.read(4 * rank))
            dtype_code, n_bytes = struct.unpack("<BI", f.read(5))
            if not name.startswith(prefix):
                f.seek(n_bytes, 1)
                continue
            if dtype_code not in DTYPES:
                raise ValueError(f"{path}: variable {name} has CTranslate2 dtype {dtype_code}, "
                                 "which this reader does not handle (quantised model?): use a "
                                 "float16/float32 conversion")
            data = np.frombuffer(f.read(n_bytes), dtype=DTYPES[dtype_code]).reshape(dims)
            variables[name] = torch.from_numpy(data.copy())
    if not variables:
        raise ValueError(f"{path}: no variables named {prefix}* (spec {spec})")
    return spec, variables
