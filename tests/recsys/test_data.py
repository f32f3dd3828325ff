"""Data layer: vocabularies, loaders, protocols, the synthetic default, the Arrow cache, batches."""
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from recsys_data_helpers import ROOT, SHARED, ml100k_folder, tiny_config

from recsys_lhuc.data import Batches, DataError, Vocab, generate_synthetic, pipeline, prepare
from recsys_lhuc.data.loaders import load_ml100k, load_ml100k_grouplens, load_ml_latest_small
from recsys_lhuc.data.protocols import label_from_rating, split_random, split_temporal
from recsys_lhuc.data.vocab import encode_multi, split_tokens
from recsys_lhuc.metrics import auc
from recsys_lhuc.spec import FeatureSpec


def test_vocab_min_count_oov_and_hashing():
    vocab = Vocab(min_count=2).fit(["a", "a", "b", "c", "c", "c"])
    assert vocab.size == 3  # OOV + {c, a}; b seen once -> OOV
    assert vocab.encode(["c", "a", "b", "zzz"]).tolist() == [1, 2, 0, 0]
    hashed = Vocab(hash_buckets=50).fit([])
    ids = hashed.encode([str(i) for i in range(1000)])
    assert hashed.size == 50 and ids.min() >= 1 and ids.max() <= 49
    assert (hashed.encode(["42"]) == hashed.encode(["42"])).all()  # stable
    assert len(np.unique(ids)) > 40


def test_multi_valued_padding_and_truncation():
    vocab = Vocab().fit(["x", "y", "z"])
    ids = encode_multi(vocab, split_tokens(["x|y", "", "z|x|y|new"], "|"), max_len=3)
    assert ids.shape == (3, 3)
    assert ids[1].tolist() == [0, 0, 0]
    assert (ids[0] > 0).sum() == 2 and ids[0, 2] == 0
    assert (ids[2] > 0).sum() == 3  # the 4th token is truncated


def test_spec_from_yaml_reads_recipes():
    spec = FeatureSpec.from_yaml(ROOT / "recipes" / "ranking" / "ml100k.yaml")
    assert spec.label == "like" and spec.personal_ids == ["user_id", "item_id"]
    assert [f.name for f in spec.multi] == ["genres"] and spec.multi[0].max_len == 6
    with pytest.raises(ValueError, match="personal id 'nope'"):
        FeatureSpec.from_dict({"categorical": ["user_id"], "numeric": [], "multi": [],
                               "label": "y", "personal_ids": ["nope"]})


def test_labels_and_splits():
    df = pd.DataFrame({"user_id": np.repeat(np.arange(20), 10), "rating": np.tile(
        [1, 2, 3, 4, 5], 40).astype(float), "timestamp": np.arange(200.0)[::-1]})
    labelled, dropped = label_from_rating(df, threshold=4)
    assert dropped == 0 and labelled["like"].tolist()[:5] == [0, 0, 0, 1, 1]
    kept, dropped = label_from_rating(df, threshold=4, drop=[3])
    assert dropped == 40 and len(kept) == 160 and 3 not in kept["rating"].values
    parts = split_random(df, seed=3)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [160, 20, 20]
    assert split_random(df, seed=3)["test"].index.equals(parts["test"].index)
    assert not split_random(df, seed=4)["test"].index.equals(parts["test"].index)
    temporal = split_temporal(df)
    for uid in df["user_id"].unique():
        test_t = temporal["test"].loc[temporal["test"]["user_id"] == uid, "timestamp"]
        train_t = temporal["train"].loc[temporal["train"]["user_id"] == uid, "timestamp"]
        assert len(test_t) == 1 and test_t.min() > train_t.max()  # latest interaction in test


def test_synthetic_ceiling_and_cache(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path)
    prepared = prepare(cfg)
    test = prepared.splits["test"].to_pandas()
    assert prepared.stats["ceiling"]["auc"] == pytest.approx(auc(test["click"], test["p_true"]))
    assert 0.7 < prepared.stats["ceiling"]["auc"] < 1.0
    assert prepared.spec.get_field("user_id").vocab_size == 151  # 150 users + OOV
    assert sum(prepared.stats["rows"].values()) == 150 * 24

    def fail(*a, **k):
        raise AssertionError("the second run must load the Arrow cache, not regenerate")

    monkeypatch.setattr(pipeline, "generate", fail)
    again = prepare(cfg)
    assert again.cache_path == prepared.cache_path
    assert again.splits["test"]["click"] == prepared.splits["test"]["click"]
    assert again.spec == prepared.spec


def test_synthetic_groups_change_preferences():
    df = generate_synthetic(n_users=400, rows_per_user=50, seed=0)
    # True probabilities for one item differ by latent group: same item, different responses.
    spread = df.groupby(["item_id", "user_segment"])["p_true"].mean().groupby("item_id").std()
    assert spread.mean() > 0.05


def test_batches_shapes_and_epoch_shuffle(tmp_path):
    prepared = prepare(tiny_config(tmp_path))
    batches = Batches(prepared.splits["train"], prepared.spec, 50, shuffle=True, seed=0)
    first = next(iter(batches))
    assert first["user_id"].dtype == torch.int64 and first["user_id"].shape == (50,)
    assert first["f0"].dtype == torch.float32 and first["click"].dtype == torch.float32
    again = next(iter(batches))
    assert torch.equal(first["user_id"], again["user_id"])  # same epoch, same order
    batches.set_epoch(1)
    assert not torch.equal(first["user_id"], next(iter(batches))["user_id"])
    assert sum(len(b["click"]) for b in batches) == prepared.stats["rows"]["train"]


# ------------------------------------------------------------------ bad input
def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def file_config(tmp_path, path, **spec):
    base = {"categorical": ["user_id", "item_id"], "numeric": ["price"], "multi": [],
            "label": "click", "user_field": "user_id"}
    base.update(spec)
    return {"data": {"source": "file", "path": str(path), "cache_dir": str(tmp_path / "c")},
            "spec": base}


GOOD = {"user_id": list("aabbccddee") * 2, "item_id": list("xyzxyzxyzx") * 2,
        "price": [1.0] * 20, "click": [0, 1] * 10}


@pytest.mark.parametrize("column,value,pattern", [
    ("price", np.nan, r"column 'price' row 7 .*nan.*finite"),
    ("price", np.inf, r"column 'price' row 7 .*inf"),
    ("click", 2, r"label column 'click' row 7 .*must be 0 or 1"),
])
def test_bad_values_name_file_column_row(tmp_path, column, value, pattern):
    rows = {k: list(v) for k, v in GOOD.items()}
    rows[column][7] = value
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=pattern) as err:
        prepare(file_config(tmp_path, path))
    assert str(path) in str(err.value)


def test_missing_column_and_empty_file(tmp_path):
    path = write_csv(tmp_path / "nocol.csv", {k: v for k, v in GOOD.items() if k != "price"})
    with pytest.raises(DataError, match=r"nocol.csv: missing column\(s\) \['price'\]"):
        prepare(file_config(tmp_path, path))
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,price,click\n")
    with pytest.raises(DataError, match="empty.csv: the file has no data rows"):
        prepare(file_config(tmp_path, empty))
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(DataError, match="blank.csv: the file has no data rows"):
        prepare(file_config(tmp_path, blank))


def test_unseen_ids_go_to_oov_and_are_counted(tmp_path):
    rows = {k: list(v) for k, v in GOOD.items()}
    rows["user_id"] = [f"u{i}" for i in range(20)]  # every user once: val/test users unseen
    path = write_csv(tmp_path / "fresh.parquet.csv", rows)
    cfg = file_config(tmp_path, path)
    cfg["data"]["split"] = {"fractions": [0.6, 0.2, 0.2], "seed": 0}
    prepared = prepare(cfg)
    assert prepared.stats["oov"]["test"]["user_id"] == 4
    assert prepared.stats["oov"]["train"]["user_id"] == 0
    test_users = np.asarray(prepared.splits["test"]["user_id"])
    assert (test_users == 0).all()


def test_parquet_source(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame(GOOD).to_parquet(path)
    prepared = prepare(file_config(tmp_path, path))
    assert sum(prepared.stats["rows"].values()) == 20


def test_ml100k_missing_folder_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError, match=r"u.data, u.user, u.item"):
        load_ml100k(tmp_path / "nowhere")


# ------------------------------------------------------------------ real data
def test_ml100k_recbole_and_grouplens_layouts_agree(tmp_path):
    folder = ml100k_folder()
    df = load_ml100k(folder)
    assert len(df) == 100_000 and df["user_id"].nunique() == 943
    assert df["item_id"].nunique() == 1682 and df["age"].notna().all()
    assert 0.5 < (df["rating"] >= 4).mean() < 0.6
    # Rebuild the official GroupLens layout for the first 300 ratings in tmp_path (test only).
    head = df.iloc[:300]
    gl = tmp_path / "gl"
    gl.mkdir()
    head[["user_id", "item_id", "rating", "timestamp"]].astype({"rating": int, "timestamp": int}) \
        .to_csv(gl / "u.data", sep="\t", header=False, index=False)
    users = df.drop_duplicates("user_id")[["user_id", "age", "gender", "occupation", "zip_code"]]
    users.to_csv(gl / "u.user", sep="|", header=False, index=False)
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    items = df.drop_duplicates("item_id")
    lines = []
    for _, it in items.iterrows():
        flags = [str(int(g in it["genres"].split("|"))) for g in genres]
        lines.append("|".join([it["item_id"], "t", f"01-Jan-{it['release_year']}", "", "u",
                               *flags]))
    (gl / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    official = load_ml100k_grouplens(gl)
    assert official["user_id"].tolist() == head["user_id"].tolist()
    assert official["genres"].tolist() == head["genres"].tolist()
    assert official["occupation"].tolist() == head["occupation"].tolist()


def test_ml100k_prepare_random_and_temporal(tmp_path):
    ml100k_folder()
    cfg = yaml.safe_load((ROOT / "recipes" / "ranking" / "ml100k.yaml").read_text())
    cfg["data"]["cache_dir"] = str(tmp_path / "cache")
    prepared = prepare(cfg)
    assert prepared.stats["rows"] == {"train": 80_000, "val": 10_000, "test": 10_000}
    assert prepared.spec.get_field("user_id").vocab_size == 944
    genres = np.asarray(prepared.splits["train"]["genres"])
    assert genres.shape == (80_000, 6) and (genres[:, 0] > 0).all()
    cfg["data"]["split"]["protocol"] = "temporal"
    temporal = prepare(cfg)
    assert temporal.cache_path != prepared.cache_path
    assert temporal.stats["oov"]["test"]["user_id"] == 0  # every test user has train history


def test_ml100k_watch_negatives_keep_observed_test_rows(tmp_path):
    ml100k_folder()
    single = yaml.safe_load((ROOT / "recipes" / "ranking" / "ml100k.yaml").read_text())
    multi = yaml.safe_load((ROOT / "recipes" / "ranking" / "ml100k_multitask.yaml").read_text())
    for cfg in (single, multi):
        cfg["data"]["cache_dir"] = str(tmp_path / "cache")
    a = prepare(single).splits["test"].to_pandas()
    b = prepare(multi).splits["test"].to_pandas()
    observed, sampled = b[b["watch"] == 1], b[b["watch"] == 0]
    assert len(sampled) == len(observed) == len(a)
    assert (sampled["like"] == 0).all()
    assert observed["user_id"].tolist() == a["user_id"].tolist()
    assert observed["like"].tolist() == a["like"].tolist()
    df = load_ml100k(ml100k_folder())
    rated = set(zip(df["user_id"], df["item_id"]))
    # decode a few sampled (user, item) pairs: none of them was ever rated by that user
    vocabs = prepare(multi).vocabs
    inv_u = {v: k for k, v in vocabs["user_id"].index.items()}
    inv_i = {v: k for k, v in vocabs["item_id"].index.items()}
    pairs = [(inv_u.get(u), inv_i.get(i)) for u, i in zip(sampled["user_id"][:500],
                                                           sampled["item_id"][:500])]
    assert not any(p in rated for p in pairs if None not in p)


def test_ml_latest_small_loads():
    if not (SHARED / "ml-latest-small" / "ratings.csv").exists():
        pytest.skip("../shared/data/ml-latest-small absent")
    df = load_ml_latest_small()
    assert len(df) == 100_004 and df["user_id"].nunique() == 671
    assert df["genres"].str.contains("|", regex=False).any() and df["year"].notna().mean() > 0.99
