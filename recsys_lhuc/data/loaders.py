"""Raw loaders: each returns one interaction DataFrame with user and item side features merged in.

Standard column names: ``user_id``, ``item_id``, ``rating``, ``timestamp``, plus side features
(``age``, ``gender``, ``occupation``, ``genres`` as a "|"-joined string, ...).
``df.attrs["source"]`` names the file that errors should point at, and column ``_row`` is the
row in that file.
"""
from __future__ import annotations

import io
import logging
import os
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .checks import DataError, check_columns, check_not_empty

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT / ".." / "shared" / "data"
CACHE = Path.home() / ".cache" / "recsys_lhuc"
GROUPLENS_ML100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _read(path: Path, **kw) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    check_not_empty(df, path)
    return df


def _finish(df: pd.DataFrame, source: Path) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    df.attrs["source"] = str(source)
    return df


# ---------------------------------------------------------------- MovieLens-100K
def _recbole_table(path: Path) -> pd.DataFrame:
    """RecBole atomic file: tab-separated, header 'name:type'."""
    df = _read(path, sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def load_ml100k_recbole(folder: Path) -> pd.DataFrame:
    """MovieLens-100K in RecBole's atomic form (ml-100k.inter/.user/.item)."""
    inter_path = folder / "ml-100k.inter"
    inter = _recbole_table(inter_path)
    check_columns(inter, ["user_id", "item_id", "rating", "timestamp"], inter_path, "ML-100K")
    inter["_row"] = range(len(inter))
    users = _recbole_table(folder / "ml-100k.user")
    items = _recbole_table(folder / "ml-100k.item").rename(columns={"class": "genres"})
    items["genres"] = items["genres"].str.split(" ").str.join("|")
    df = inter.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    df["rating"] = df["rating"].astype(float)
    df["timestamp"] = df["timestamp"].astype(float)
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    return _finish(df, inter_path)


def load_ml100k_grouplens(folder: Path) -> pd.DataFrame:
    """MovieLens-100K in the official GroupLens layout (u.data, u.user, u.item)."""
    data_path = folder / "u.data"
    inter = _read(data_path, sep="\t", header=None, dtype=str,
                  names=["user_id", "item_id", "rating", "timestamp"])
    inter["_row"] = range(len(inter))
    users = _read(folder / "u.user", sep="|", header=None, dtype=str,
                  names=["user_id", "age", "gender", "occupation", "zip_code"])
    items = _read(folder / "u.item", sep="|", header=None, dtype=str, encoding="latin-1",
                  names=["item_id", "movie_title", "release_date", "video_date", "url",
                         *ML100K_GENRES])
    flags = items[ML100K_GENRES].astype(int).to_numpy().astype(bool)
    items["genres"] = ["|".join(g for g, on in zip(ML100K_GENRES, row) if on) for row in flags]
    items["release_year"] = items["release_date"].str[-4:]
    items = items[["item_id", "movie_title", "release_year", "genres"]]
    df = inter.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    df["rating"] = df["rating"].astype(float)
    df["timestamp"] = df["timestamp"].astype(float)
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    return _finish(df, data_path)


def default_ml100k_folders() -> list[Path]:
    """Where a previous ``download-ml100k`` put the files (never fetched implicitly)."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [xdg / "lhuc-data" / "ml-100k", CACHE / "ml-100k"]


def download_ml100k(dest=None) -> Path:
    """Fetch MovieLens-100K explicitly (``python -m recsys_lhuc download-ml100k``): the shared
    script ``get_ml100k.sh`` when the checkout has one (RecBole's copy from PyPI), otherwise the
    GroupLens zip. Returns the folder."""
    script = SHARED_DATA / "get_ml100k.sh"
    if script.exists():
        args = ["bash", str(script)] + ([str(dest)] if dest else [])
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip().splitlines()[-1])
        log.warning("%s failed: %s", script, out.stderr.strip()[-500:])
    target = Path(dest) if dest else CACHE / "ml-100k"
    try:
        with urllib.request.urlopen(GROUPLENS_ML100K, timeout=20) as resp:
            payload = resp.read()
    except OSError as err:
        raise DataError(f"could not download MovieLens-100K from {GROUPLENS_ML100K} ({err}); "
                        f"unpack u.data, u.user, u.item into {target} by hand") from err
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for name in ("u.data", "u.user", "u.item"):
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(zf.read(f"ml-100k/{name}"))
    return target


def find_ml100k(path=None) -> Path:
    """Locate ML-100K: an explicit folder (RecBole or GroupLens layout) or the folder a previous
    ``download-ml100k`` filled. Nothing is downloaded or run here: a missing set is an error
    that says how to fetch it."""
    candidates = [Path(path)] if path else default_ml100k_folders()
    for folder in candidates:
        if (folder / "ml-100k.inter").exists() or (folder / "u.data").exists():
            return folder
    raise DataError(
        f"MovieLens-100K not found (looked in {[str(c) for c in candidates]}). Fetch it with "
        f"`python -m recsys_lhuc download-ml100k` (runs ../shared/data/get_ml100k.sh when present, "
        f"else downloads {GROUPLENS_ML100K}), or put the GroupLens files u.data, u.user, u.item or "
        f"RecBole's ml-100k.inter/.user/.item in a folder and pass it as data.path.")


def load_ml100k(path=None) -> pd.DataFrame:
    folder = find_ml100k(path)
    if (folder / "ml-100k.inter").exists():
        return load_ml100k_recbole(folder)
    return load_ml100k_grouplens(folder)


# ---------------------------------------------------------------- ml-latest-small
def load_ml_latest_small(path=None) -> pd.DataFrame:
    """MovieLens latest-small (ratings.csv + movies.csv); no user demographics."""
    folder = Path(path) if path else SHARED_DATA / "ml-latest-small"
    ratings_path = folder / "ratings.csv"
    if not ratings_path.exists():
        raise DataError(f"{ratings_path}: not found. Download ml-latest-small from GroupLens and "
                        "pass its folder as data.path.")
    ratings = _read(ratings_path, dtype={"userId": str, "movieId": str})
    check_columns(ratings, ["userId", "movieId", "rating", "timestamp"], ratings_path,
                  "ml-latest-small")
    ratings["_row"] = range(len(ratings))
    movies = _read(folder / "movies.csv", dtype={"movieId": str})
    movies["year"] = movies["title"].str.extract(r"\((\d{4})\)\s*$", expand=False)
    df = ratings.merge(movies, on="movieId", how="left").rename(
        columns={"userId": "user_id", "movieId": "item_id"})
    df["timestamp"] = df["timestamp"].astype(float)
    return _finish(df, ratings_path)


# ---------------------------------------------------------------- any CSV/Parquet
def load_table(path, id_columns=()) -> pd.DataFrame:
    """Any CSV or Parquet file whose columns the feature spec names.

    ``id_columns`` are read as strings: pandas would read an id column with one empty cell as
    floats, so "10" would become "10.0" and a clean file scored later would miss every id.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; set data.path to a CSV or Parquet file")
    if path.suffix in (".parquet", ".pq"):
        df = read_parquet_ids_as_strings(path, id_columns)
        check_not_empty(df, path)
    else:
        df = _read(path, sep="\t" if path.suffix == ".tsv" else ",",
                   dtype={c: str for c in id_columns})
    df["_row"] = range(len(df))
    return _finish(df, path)


def read_parquet_ids_as_strings(path: Path, id_columns) -> pd.DataFrame:
    """Parquet with the id columns cast to strings by Arrow (an integer column with nulls, which
    pandas would turn into floats, keeps "10"; a float column of whole numbers becomes "10")."""
    table = pq.read_table(path)
    for name in id_columns:
        if name in table.column_names:
            i = table.column_names.index(name)
            column = table.column(i)
            if pa.types.is_floating(column.type):
                whole = pc.equal(column, pc.floor(column))
                if pc.all(pc.or_kleene(whole, pc.is_null(column))).as_py():
                    column = pc.cast(column, pa.int64())
            table = table.set_column(i, name, pc.cast(column, pa.string()))
    return table.to_pandas()


def source_files(source: str, path=None) -> list[Path]:
    """The files a source reads (their size/mtime key the Arrow cache)."""
    if source == "ml100k":
        folder = find_ml100k(path)
        names = ["ml-100k.inter", "ml-100k.user", "ml-100k.item", "u.data", "u.user", "u.item"]
        return [folder / n for n in names if (folder / n).exists()]
    if source == "ml-latest-small":
        folder = Path(path) if path else SHARED_DATA / "ml-latest-small"
        return [folder / "ratings.csv", folder / "movies.csv"]
    if source == "file":
        return [Path(path)]
    return []


def load_source(source: str, path=None, id_columns=()) -> pd.DataFrame:
    if source == "ml100k":
        return load_ml100k(path)
    if source == "ml-latest-small":
        return load_ml_latest_small(path)
    if source == "file":
        if not path:
            raise DataError("data.source is 'file' but data.path is not set")
        return load_table(path, id_columns)
    raise DataError(f"unknown data.source {source!r}; use ml100k, ml-latest-small, file or "
                    "synthetic")
