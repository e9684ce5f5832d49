"""The preprocess stage's logic: strategies, blank faces, leak-free splits, saved arrays."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ferflow import CLASS_NAMES
from ferflow.data.dedup import pixel_hashes
from ferflow.data.folders import load_folder_dataset
from ferflow.data.preprocess import prepare, training_class_weights
from ferflow.data.processed import load_processed, save_processed
from ferflow.data.records import Dataset

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def synthetic(labels: list[int], splits: list[str], copies_of: dict[int, int] | None = None) -> Dataset:
    """Distinct random faces; copies_of maps an index to the index whose pixels it repeats."""
    rng = np.random.default_rng(len(labels))
    images = rng.integers(0, 256, size=(len(labels), 48, 48)).astype(np.uint8)
    for index, source in (copies_of or {}).items():
        images[index] = images[source]
    return Dataset(
        images,
        np.asarray(labels, dtype=np.int64),
        np.asarray([f"f{i}" for i in range(len(labels))]),
        np.asarray(splits),
        tuple(CLASS_NAMES[: max(labels) + 1]),
    )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 60), k=st.integers(2, 4), seed=st.integers(0, 1000), data=st.data())
def test_no_split_shares_a_face_with_another_whatever_the_duplicates(n, k, seed, data) -> None:
    labels = [i % k for i in range(n)]
    copies = data.draw(st.dictionaries(st.integers(n // 2, n - 1), st.integers(0, n // 2 - 1), max_size=n // 2))
    relabel = data.draw(st.sets(st.integers(n // 2, n - 1), max_size=3))
    labels = [(label + 1) % k if i in relabel else label for i, label in enumerate(labels)]
    for strategy, splits in (
        ("stratified", ["train"] * n),
        ("official", ["train", "test"] * (n // 2) + ["train"] * (n % 2)),
    ):
        processed, _ = prepare(synthetic(labels, splits, copies), FRACTIONS, seed, strategy=strategy)
        hashes = {s: set(pixel_hashes(processed.x[s])) for s in ("train", "val", "test")}
        assert not hashes["train"] & hashes["val"]
        assert not hashes["train"] & hashes["test"]
        assert not hashes["val"] & hashes["test"]


def test_official_keeps_the_source_test_split_and_carves_val_from_train(tiny_source) -> None:
    dataset = load_folder_dataset(tiny_source)
    processed, _ = prepare(dataset, FRACTIONS, seed=0, strategy="official")
    assert sorted(processed.files["test"].tolist()) == sorted(
        f for f in dataset.files.tolist() if f.startswith("test/")
    )
    assert all(f.startswith("train/") for s in ("train", "val") for f in processed.files[s])
    share = len(processed.y["val"]) / (len(processed.y["val"]) + len(processed.y["train"]))
    assert share == pytest.approx(0.15 / 0.85, abs=0.05)


def test_official_uses_a_validation_folder_when_there_is_one(tiny_source) -> None:
    shutil.copytree(tiny_source / "test", tiny_source / "validation")
    for path in (tiny_source / "validation").rglob("*.jpg"):  # new faces, so not duplicates of test
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path.with_suffix(".png"))
        path.unlink()
    processed, _ = prepare(load_folder_dataset(tiny_source), FRACTIONS, seed=0, strategy="official")
    assert all(f.startswith("validation/") for f in processed.files["val"])
    assert len(processed.y["val"]) == 14


def test_official_keeps_the_test_copy_of_a_cross_split_duplicate() -> None:
    # Face 0 (train) and face 1 (test) are identical with the same label.
    dataset = synthetic([0, 0, 1, 1, 0, 1], ["train", "test", "train", "test", "train", "train"], {1: 0})
    processed, report = prepare(dataset, FRACTIONS, seed=0, strategy="official")
    assert "f1" in processed.files["test"].tolist()
    assert "f0" not in np.concatenate([processed.files[s] for s in ("train", "val")]).tolist()
    assert report.duplicates.cross_split_groups == 1


def test_official_without_a_test_split_is_refused(tiny_source) -> None:
    with pytest.raises(ValueError, match="needs a test split"):
        prepare(load_folder_dataset(tiny_source / "train"), FRACTIONS, seed=0, strategy="official")


def test_official_refuses_split_names_it_cannot_place() -> None:
    with pytest.raises(ValueError, match=r"cannot place source split\(s\) \['holdout'\]"):
        prepare(synthetic([0, 1], ["train", "holdout"]), FRACTIONS, seed=0, strategy="official")


def test_blank_faces_are_dropped_or_kept_by_policy() -> None:
    dataset = synthetic([0, 1] * 10, ["train"] * 20)
    dataset.images[3] = 0
    dataset.images[4] = 200
    dropped, report = prepare(dataset, FRACTIONS, seed=0, blank_threshold=5.0, on_blank="drop")
    assert report.blank == 2 and report.blank_removed == 2 and report.kept == 18
    assert sum(len(y) for y in dropped.y.values()) == 18
    kept, report = prepare(dataset, FRACTIONS, seed=0, blank_threshold=5.0, on_blank="keep")
    assert report.blank == 2 and report.blank_removed == 0
    assert sum(len(y) for y in kept.y.values()) == 20


def test_saved_arrays_load_without_pickle_and_match(tiny_source, tmp_path) -> None:
    processed, _ = prepare(load_folder_dataset(tiny_source), FRACTIONS, seed=3)
    path = tmp_path / "dataset.npz"
    save_processed(path, processed)
    loaded = load_processed(path)
    assert loaded.class_names == processed.class_names
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.x[split], processed.x[split])
        np.testing.assert_array_equal(loaded.y[split], processed.y[split])
    weights = training_class_weights(processed)
    counts = processed.counts()["train"]
    n = sum(counts.values())
    assert weights == pytest.approx({c: n / (len(counts) * counts[c]) for c in counts})


def test_loading_before_preprocess_says_what_to_run(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc repro preprocess"):
        load_processed(tmp_path / "missing.npz")


def test_a_blank_threshold_that_drops_most_faces_is_refused_naming_the_key() -> None:
    dataset = synthetic([0, 1] * 10, ["train"] * 20)
    dataset.images[:] = 100 + dataset.images // 16  # low-contrast faces: grey values vary by about 4.6
    with pytest.raises(
        ValueError,
        match=r"data.blank_threshold = 20 marks 20 of 20 faces as blank \(every face "
        r"of \['angry', 'disgust'\]\).*lower it",
    ):
        prepare(dataset, FRACTIONS, seed=0, blank_threshold=20.0)
    dataset.images[::2] = synthetic([0, 1] * 5, ["train"] * 10).images  # the angry faces real again
    with pytest.raises(ValueError, match=r"marks 10 of 20 faces as blank \(every face of \['disgust'\]\)"):
        prepare(dataset, FRACTIONS, seed=0, blank_threshold=20.0)
    prepare(dataset, FRACTIONS, seed=0, blank_threshold=20.0, on_blank="keep")  # kept: nothing refused
