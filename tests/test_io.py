"""Atomic writes: nothing half-written, arrays load without pickle."""

from __future__ import annotations

import numpy as np
import pytest

from ferflow.io import atomic_path, load_npz, read_json, save_npz, write_json


def test_failed_write_leaves_neither_output_nor_temporary(tmp_path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_version(tmp_path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"v": 1}


def test_json_is_stable_and_takes_numpy_values(tmp_path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, {"z": np.float32(0.5), "a": np.arange(3), "m": (1, 2)})
    write_json(b, {"m": [1, 2], "a": [0, 1, 2], "z": 0.5})
    assert a.read_bytes() == b.read_bytes()


def test_npz_round_trip_without_pickle(tmp_path) -> None:
    path = tmp_path / "d.npz"
    save_npz(path, x=np.zeros((2, 48, 48), np.uint8), names=np.asarray(["happy", "sad"], dtype=np.str_))
    loaded = load_npz(path)
    assert loaded["x"].shape == (2, 48, 48)
    assert loaded["names"].tolist() == ["happy", "sad"]


def test_object_arrays_are_refused(tmp_path) -> None:
    with pytest.raises(TypeError, match="dtype object"):
        save_npz(tmp_path / "d.npz", bad=np.asarray([{"a": 1}], dtype=object))


def test_outputs_get_ordinary_permissions(tmp_path) -> None:
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
