"""Which device the models run on: the one asked for, else a GPU where there is one."""

import torch


def pick_device(name: str | None = None) -> torch.device:
    """The device asked for, else the GPU where there is one: the models run there and
    their log-probabilities come back to the CPU for decoding."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def describe_device(device: torch.device) -> str:
    """How results name the device: a GPU by its name, the CPU with its thread count."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
