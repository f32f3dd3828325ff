"""Input validation: every error names the file, the column, the row, and what to do."""
from __future__ import annotations

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Bad input data; the message says where and how to fix it."""


def check_not_empty(df: pd.DataFrame, path) -> None:
    if len(df) == 0:
        raise DataError(f"{path}: the file has no data rows; check that it is the right file "
                        "and that it was fully written/downloaded")


def check_columns(df: pd.DataFrame, columns, path, what: str = "the feature spec") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} required by {what}; the file has "
                        f"{list(df.columns)}. Rename the column(s) or edit the spec.")


def _row_label(df: pd.DataFrame, pos: int) -> str:
    row = df["_row"].iloc[pos] if "_row" in df.columns else df.index[pos]
    return f"row {int(row)} (0-based data row, header excluded)"


def check_finite(df: pd.DataFrame, columns, path) -> None:
    """Numeric columns must be numbers and finite."""
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raw = df[col].iloc[bad[0]]
            raise DataError(f"{path}: column {col!r} {_row_label(df, bad[0])} has value {raw!r} "
                            f"({len(bad)} bad row(s) in all); numeric features must be finite "
                            "numbers: fill or drop those rows before training.")


def check_binary(df: pd.DataFrame, column, path) -> None:
    """Labels must be 0 or 1."""
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
    if len(bad):
        raw = df[column].iloc[bad[0]]
        raise DataError(f"{path}: label column {column!r} {_row_label(df, bad[0])} has value "
                        f"{raw!r} ({len(bad)} bad row(s) in all); labels must be 0 or 1. For "
                        "ratings, set data.label_from: {column: rating, threshold: 4} instead.")
