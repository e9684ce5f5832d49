"""The folder loader: layouts, conversion, and a clear error for each bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferflow import CLASS_NAMES
from ferflow.data.folders import find_images, load_dataset, load_folder_dataset, load_image
from ferflow.data.records import DataError


def test_loads_every_face_as_48x48_uint8_with_folder_labels(tiny_source: Path) -> None:
    dataset = load_folder_dataset(tiny_source)
    assert dataset.images.shape == (56, 48, 48)
    assert dataset.images.dtype == np.uint8
    assert dataset.class_counts() == {name: 8 for name in CLASS_NAMES}
    for file, label, split in zip(dataset.files, dataset.labels, dataset.splits):
        assert Path(file).parts[0] == split
        assert Path(file).parts[1] == CLASS_NAMES[label]


def test_pixels_match_a_direct_decode(tiny_source: Path) -> None:
    dataset = load_folder_dataset(tiny_source)
    first = tiny_source / dataset.files[0]
    np.testing.assert_array_equal(dataset.images[0], np.asarray(Image.open(first).convert("L")))


def test_flat_layout_of_class_folders(tiny_source: Path) -> None:
    dataset = load_folder_dataset(tiny_source / "train")
    assert len(dataset) == 42
    assert set(dataset.splits) == {""}


def test_class_subset_keeps_configured_order_and_skips_the_rest(tiny_source: Path) -> None:
    subset = ("surprise", "happy")
    dataset = load_folder_dataset(tiny_source, subset)
    assert dataset.class_names == subset
    assert dataset.class_counts() == {"surprise": 8, "happy": 8}
    assert all(Path(f).parts[1] == subset[label] for label, f in zip(dataset.labels, dataset.files))
    assert set(dataset.skipped_classes) == set(CLASS_NAMES) - set(subset)


def test_rgb_and_large_images_are_converted(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 120), color=(255, 0, 0)).save(path)
    image = load_image(path)
    assert image.shape == (48, 48) and image.dtype == np.uint8
    assert int(image[0, 0]) == round(0.299 * 255)  # ITU-R 601 luma of pure red


def test_missing_source_names_the_key_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        load_folder_dataset(missing, key="data.source")  # the key is the caller's (the notebook's) to name
    assert "data.source" in str(error.value)
    assert str(missing) in str(error.value)


def test_unknown_class_folder_is_named(tiny_source: Path) -> None:
    (tiny_source / "train" / "contempt").mkdir()
    with pytest.raises(DataError, match="unknown class folder .*contempt"):
        find_images(tiny_source)


def test_stray_non_image_file_is_named(tiny_source: Path) -> None:
    stray = tiny_source / "train" / "happy" / "notes.txt"
    stray.write_text("not a face")
    with pytest.raises(DataError, match="notes.txt"):
        find_images(tiny_source)


def test_hidden_files_are_skipped_and_counted(tiny_source: Path) -> None:
    (tiny_source / "train" / "happy" / ".DS_Store").write_bytes(b"\0\1")
    dataset = load_folder_dataset(tiny_source)
    assert dataset.skipped_hidden == 1
    assert len(dataset) == 56


def test_corrupt_image_is_named(tiny_source: Path) -> None:
    corrupt = tiny_source / "train" / "sad" / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff this is not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        load_folder_dataset(tiny_source)


def test_an_unreadable_file_is_named_without_python_object_reprs(tiny_source: Path) -> None:
    (tiny_source / "train" / "sad" / "notes.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError) as error:
        load_image(tiny_source / "train" / "sad" / "notes.png")
    assert "notes.png" in str(error.value) and "BytesIO" not in str(error.value) and " at 0x" not in str(error.value)


def test_a_16_bit_png_decodes_like_its_8_bit_face_here_and_in_fer_predict(tiny_source: Path, tmp_path) -> None:
    import cv2

    from ferflow.faces.photo import read_images, to_grey

    face = load_image(next((tiny_source / "train" / "happy").glob("*.jpg")))
    wide = tmp_path / "face16.png"
    cv2.imwrite(str(wide), face.astype(np.uint16) * 257)  # the same face at 16 bits per pixel
    with Image.open(wide) as image:
        assert image.mode.startswith("I")  # really 16-bit, the case PIL's convert("L") clips
    decoded = load_image(wide)
    np.testing.assert_array_equal(decoded, face)
    predicted_input = to_grey(next(read_images(wide, None)).pixels)
    assert np.abs(predicted_input.astype(int) - face.astype(int)).max() <= 1  # both paths agree


def test_skip_policy_leaves_corrupt_images_out_and_lists_them(tiny_source: Path) -> None:
    for name in ("broken1.jpg", "broken2.png"):
        (tiny_source / "train" / "sad" / name).write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"broken1.jpg.*\(1 more undecodable files"):
        load_folder_dataset(tiny_source)
    dataset = load_folder_dataset(tiny_source, on_bad="skip")
    assert len(dataset) == 56
    assert [Path(item).name for item, _ in dataset.skipped_bad] == ["broken1.jpg", "broken2.png"]
    assert all("cannot decode image" in reason for _, reason in dataset.skipped_bad)


def test_empty_class_is_named(tiny_source: Path) -> None:
    for split in ("train", "test"):
        shutil.rmtree(tiny_source / split / "disgust")
        (tiny_source / split / "disgust").mkdir()
    with pytest.raises(DataError, match="disgust"):
        find_images(tiny_source)


def test_classes_can_be_renamed_and_reordered(tiny_source: Path) -> None:
    dataset = load_dataset(tiny_source, ("surprise", "happy=joy"))
    assert dataset.class_names == ("surprise", "joy")
    assert all(Path(f).parts[1] == ("surprise", "happy")[label] for label, f in zip(dataset.labels, dataset.files))


def test_intensity_stats_count_faces_in_whole_numbers() -> None:
    import numpy as np

    from ferflow.data.explore import intensity_stats

    images = np.stack([np.full((48, 48), v, np.uint8) for v in (0, 10, 20, 255)])
    stats = intensity_stats(images, np.array([0, 0, 1, 1]), ("happy", "sad", "fear"))
    assert stats["faces"].tolist() == [2, 2, 0, 4] and str(stats["faces"].dtype) == "int64"
    assert stats.loc["sad", "max"] == 255 and "2.0" not in stats.to_html()
    assert stats.loc["all", "mean"] == np.mean([0, 10, 20, 255])
    assert stats.loc["fear"].isna()[["mean", "min"]].all()  # a class without faces has no grey values
