"""Raw loaders: each returns one interaction DataFrame with user and item side features merged in.

Standard column names: ``user_id``, ``item_id``, ``rating``, ``timestamp``, plus side features
(``age``, ``gender``, ``occupation``, ``genres`` as a "|"-joined string, ...).
``df.attrs["source"]`` names the file that errors should point at, and column ``_row`` is the
row in that file.
"""
from __future__ import annotations

import io
import logging
import subprocess
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

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


def _download_grouplens_ml100k() -> Path | None:
    target = CACHE / "ml-100k"
    if (target / "u.data").exists():
        return target
    try:
        with urllib.request.urlopen(GROUPLENS_ML100K, timeout=20) as resp:
            payload = resp.read()
    except OSError as err:
        log.info("GroupLens not reachable (%s)", err)
        return None
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        zf.extractall(CACHE)
    return target


def find_ml100k(path=None) -> Path:
    """Locate ML-100K: an explicit folder (RecBole or GroupLens layout), the shared fetch script,
    a cached or fresh GroupLens download, or a clear error saying where to put the files."""
    candidates = [Path(path)] if path else []
    if not path:
        script = SHARED_DATA / "get_ml100k.sh"
        if script.exists():
            out = subprocess.run(["bash", str(script)], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip().splitlines()[-1]))
        candidates.append(CACHE / "ml-100k")
    for folder in candidates:
        if (folder / "ml-100k.inter").exists() or (folder / "u.data").exists():
            return folder
    if not path:
        folder = _download_grouplens_ml100k()
        if folder:
            return folder
    raise DataError(
        f"MovieLens-100K not found (looked in {[str(c) for c in candidates]}). Put the GroupLens "
        f"files u.data, u.user, u.item (from {GROUPLENS_ML100K}) or RecBole's ml-100k.inter/"
        f".user/.item in a folder and pass it as data.path, or unpack them into "
        f"{CACHE / 'ml-100k'}.")


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
def load_table(path) -> pd.DataFrame:
    """Any CSV or Parquet file whose columns the feature spec names."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; set data.path to a CSV or Parquet file")
    if path.suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
        check_not_empty(df, path)
    else:
        df = _read(path, sep="\t" if path.suffix == ".tsv" else ",")
    df["_row"] = range(len(df))
    return _finish(df, path)


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


def load_source(source: str, path=None) -> pd.DataFrame:
    if source == "ml100k":
        return load_ml100k(path)
    if source == "ml-latest-small":
        return load_ml_latest_small(path)
    if source == "file":
        if not path:
            raise DataError("data.source is 'file' but data.path is not set")
        return load_table(path)
    raise DataError(f"unknown data.source {source!r}; use ml100k, ml-latest-small, file or "
                    "synthetic")
