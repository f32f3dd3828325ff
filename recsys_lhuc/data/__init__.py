"""Data layer: feature specs -> vocabularies -> encoded Arrow splits -> tensor batches."""
from .batches import Batches
from .checks import DataError
from .pipeline import Encoder, Prepared, load_prepared, prepare
from .synthetic import generate as generate_synthetic
from .vocab import Vocab

__all__ = ["Batches", "DataError", "Encoder", "Prepared", "Vocab", "generate_synthetic",
           "load_prepared", "prepare"]
