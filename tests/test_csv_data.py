"""The contest CSV: label mapping, a fast parser, and a clear error for each malformed row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ferflow import CLASS_NAMES
from ferflow.data.contest_csv import CONTEST_EMOTIONS, load_csv_dataset, write_contest_csv
from ferflow.data.folders import load_dataset, load_folder_dataset
from ferflow.data.records import DataError

HEADER = "emotion,pixels,Usage\n"


def face_row(emotion: int, value: int = 7, usage: str = "Training", count: int = 2304) -> str:
    return f"{emotion},{' '.join([str(value)] * count)},{usage}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fer2013.csv"
    path.write_text(text)
    return path


def all_classes(usage: str = "Training") -> str:
    return "".join(face_row(code, value=code * 30, usage=usage) for code in range(7))


def test_contest_codes_map_by_name_not_by_alphabet(tmp_path) -> None:
    # Code 4 is Sad and 6 is Neutral in the contest; alphabetically index 4 is neutral.
    path = write(tmp_path, HEADER + face_row(4, value=44) + face_row(6, value=66) + all_classes())
    dataset = load_csv_dataset(path, CLASS_NAMES)
    by_value = {int(img[0, 0]): CLASS_NAMES[label] for img, label in zip(dataset.images, dataset.labels)}
    assert by_value[44] == "sad" and by_value[66] == "neutral"
    assert CONTEST_EMOTIONS[3] == "happy" and CONTEST_EMOTIONS[5] == "surprise"


def test_same_faces_as_the_folders(tiny_source, tmp_path) -> None:
    folders = load_folder_dataset(tiny_source)
    usages = ["Training" if s == "train" else "PrivateTest" for s in folders.splits]
    path = tmp_path / "faces.csv"
    write_contest_csv(path, folders.images, [CLASS_NAMES[label] for label in folders.labels], usages)
    from_csv = load_dataset(path)  # chosen by the .csv suffix
    np.testing.assert_array_equal(from_csv.images, folders.images)
    np.testing.assert_array_equal(from_csv.labels, folders.labels)
    assert from_csv.splits.tolist() == usages
    assert from_csv.files[0] == "line 2"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(faces=arrays(np.uint8, st.tuples(st.integers(1, 6), st.just(48), st.just(48))), data=st.data())
def test_parser_round_trips_any_faces(tmp_path, faces, data) -> None:
    names = data.draw(st.lists(st.sampled_from(CLASS_NAMES), min_size=len(faces), max_size=len(faces)))
    usages = data.draw(
        st.lists(st.sampled_from(["Training", "PublicTest", "PrivateTest"]), min_size=len(faces), max_size=len(faces))
    )
    path = tmp_path / "round_trip.csv"
    write_contest_csv(path, faces, names, usages)
    present = tuple(c for c in CLASS_NAMES if c in names)
    dataset = load_csv_dataset(path, present)
    np.testing.assert_array_equal(dataset.images, faces)
    assert [present[label] for label in dataset.labels] == names


def test_class_subset_follows_the_configured_order(tmp_path) -> None:
    path = write(tmp_path, HEADER + all_classes())
    dataset = load_csv_dataset(path, ("surprise", "happy"))
    assert sorted(dataset.labels.tolist()) == [0, 1]
    assert int(dataset.images[dataset.labels == 0][0, 0, 0]) == CONTEST_EMOTIONS.index("surprise") * 30


@pytest.mark.parametrize(
    "row, message",
    [
        (face_row(3, count=2303), r"line 9 has 2303 pixel values, not 2304"),
        (face_row(3, count=2305), r"line 9 has 2305 pixel values, not 2304"),
        ("3," + " ".join(["7"] * 2303) + " x7,Training\n", r"line 9 has a pixel value 'x7'"),
        ("3," + " ".join(["7"] * 2303) + " 300,Training\n", r"line 9 has a pixel value '300'"),
        (face_row(7), r"line 9 emotion '7' is not an integer in 0..6"),
        ("happy," + " ".join(["7"] * 2304) + ",Training\n", r"line 9 emotion 'happy'"),
        (face_row(3, usage="Validation"), r"line 9 Usage 'Validation' is not one of"),
    ],
)
def test_each_malformed_row_is_named_by_its_line(tmp_path, row, message) -> None:
    path = write(tmp_path, HEADER + all_classes() + row)  # header + 7 rows, so the bad row is line 9
    with pytest.raises(DataError, match=message):
        load_csv_dataset(path, CLASS_NAMES)


def test_skip_policy_leaves_bad_rows_out_and_lists_them(tmp_path) -> None:
    path = write(tmp_path, HEADER + all_classes() + face_row(3, count=5) + face_row(9))
    dataset = load_csv_dataset(path, CLASS_NAMES, on_bad="skip")
    assert len(dataset) == 7
    assert [item.rsplit(":", 1)[1] for item, _ in dataset.skipped_bad] == ["line 9", "line 10"]


def test_missing_columns_are_named(tmp_path) -> None:
    path = write(tmp_path, "emotion,Usage\n3,Training\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['pixels'\]"):
        load_csv_dataset(path, CLASS_NAMES)


def test_missing_csv_names_the_key_and_path(tmp_path) -> None:
    with pytest.raises(DataError, match=r"data.source: file '.*nope.csv' does not exist"):
        load_dataset(tmp_path / "nope.csv", key="data.source")


def test_class_without_rows_is_named(tmp_path) -> None:
    path = write(tmp_path, HEADER + face_row(3) + face_row(4))
    with pytest.raises(DataError, match=r"no rows for class\(es\) \['angry'"):
        load_csv_dataset(path, CLASS_NAMES)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"'.*empty.csv' is empty; the contest file starts with the header"),
        ("emotion,pixels,Usage\n", r"'.*empty.csv' has a header but no rows"),
    ],
)
def test_an_empty_csv_is_named(tmp_path, text, message) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_csv_dataset(path, CLASS_NAMES)
