"""The content-addressed image store: names from hashes only, atomic writes, dedupe, lossless."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from station.frames.store import TEMP_PREFIX, ImageStore, ImageStoreError


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (90, 160, 3), dtype=np.uint8)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_file_name_is_the_sha256_of_its_bytes_under_fanout_folders(
    tmp_path: Path, image: np.ndarray
) -> None:
    store = ImageStore(tmp_path / "images")
    stored = store.put(image)
    assert stored.sha256 == hashlib.sha256(stored.path.read_bytes()).hexdigest()
    h = stored.sha256
    assert stored.relpath == f"{h[:2]}/{h[2:4]}/{h}.png"
    assert stored.path == tmp_path / "images" / stored.relpath
    assert stored.created and store.verify(h)


def test_png_default_is_lossless(tmp_path: Path, image: np.ndarray) -> None:
    store = ImageStore(tmp_path)
    assert np.array_equal(store.get(store.put(image).sha256), image)


def test_jpeg_store_is_lossy_but_content_addressed(tmp_path: Path, image: np.ndarray) -> None:
    store = ImageStore(tmp_path, fmt="jpg", jpeg_quality=90)
    stored = store.put(image)
    assert stored.relpath.endswith(".jpg")
    assert store.get(stored.sha256).shape == image.shape


def test_same_image_is_stored_once(tmp_path: Path, image: np.ndarray) -> None:
    store = ImageStore(tmp_path)
    first, second = store.put(image), store.put(image.copy())
    assert first.sha256 == second.sha256
    assert (first.created, second.created) == (True, False)
    assert _files(tmp_path) == [first.path]
    other = store.put(255 - image)
    assert other.sha256 != first.sha256 and len(_files(tmp_path)) == 2


def test_concurrent_writers_of_the_same_image_leave_one_whole_file(
    tmp_path: Path, image: np.ndarray
) -> None:
    store = ImageStore(tmp_path)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def work() -> None:
        barrier.wait()
        results.append(store.put(image).sha256)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    (only,) = _files(tmp_path)
    assert store.verify(results[0]) and only.name == f"{results[0]}.png"


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temp_file(
    tmp_path: Path, image: np.ndarray, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    store = ImageStore(tmp_path)
    expected = store.path_for(hashlib.sha256(store.encode(image)).hexdigest())

    def boom(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(ImageStoreError, match="No space left"):
        store.put(image)
    monkeypatch.undo()
    assert not expected.exists()
    assert _files(tmp_path) == []
    assert store.put(image).path == expected  # and the store still works afterwards


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "g" * 64, "A" * 64, "", "a" * 63 + "/"])
def test_paths_come_only_from_a_valid_hash(tmp_path: Path, bad: str) -> None:
    store = ImageStore(tmp_path)
    with pytest.raises(ImageStoreError, match="64 lowercase hex"):
        store.path_for(bad)


def test_unknown_format_and_missing_image_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ImageStoreError, match="not supported"):
        ImageStore(tmp_path, fmt="gif")
    with pytest.raises(ImageStoreError, match="no image"):
        ImageStore(tmp_path).get("0" * 64)
    with pytest.raises(ImageStoreError, match="uint8"):
        ImageStore(tmp_path).put(np.zeros((4, 4), np.float64))


def test_stale_temp_files_from_a_crash_are_removed(tmp_path: Path, image: np.ndarray) -> None:
    store = ImageStore(tmp_path)
    stored = store.put(image)
    stale = stored.path.parent / f"{TEMP_PREFIX}123-abc"
    stale.write_bytes(b"half a png")
    os.utime(stale, (1, 1))
    fresh = stored.path.parent / f"{TEMP_PREFIX}456-def"
    fresh.write_bytes(b"being written now")
    assert store.remove_stale_temp_files(older_than_s=60) == 1
    assert not stale.exists() and fresh.exists() and stored.path.exists()


def test_a_tampered_file_fails_verification(tmp_path: Path, image: np.ndarray) -> None:
    store = ImageStore(tmp_path)
    stored = store.put(image)
    stored.path.write_bytes(stored.path.read_bytes() + b"x")
    assert not store.verify(stored.sha256)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Paths of everything fsynced, in order (the real fsync still runs); a file's data is fsynced
    under its temporary name, recorded here as <folder>/TEMP."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which path an fsynced descriptor is")
    real_fsync = os.fsync
    seen: list[Path] = []

    def recording_fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        seen.append(path.parent / "TEMP" if path.name.startswith(TEMP_PREFIX) else path)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return seen


def test_new_folders_are_fsynced_in_their_parents_so_a_power_cut_keeps_the_file(
    tmp_path: Path, image: np.ndarray, fsynced: list[Path]
) -> None:
    root = tmp_path.resolve() / "site" / "images"
    store = ImageStore(root)
    assert fsynced == [root.parent.parent, root.parent]  # new 'site' and 'images' entries
    fsynced.clear()
    stored = store.put(image)
    h = stored.sha256
    fanout_1, fanout_2 = root / h[:2], root / h[:2] / h[2:4]
    # file data, and each new directory entry: ab in root, cd in ab, the file in cd
    data = fanout_2 / "TEMP"
    assert {data, root, fanout_1, fanout_2} <= set(fsynced)
    assert fsynced.index(data) < fsynced.index(fanout_2)  # data, then the rename is made durable


def _two_blobs_in_one_folder() -> tuple[bytes, bytes]:
    """Two byte strings whose hashes share the fan-out folders (a birthday search, ~300 tries)."""
    seen: dict[str, bytes] = {}
    for k in range(100_000):
        blob = b"blob %d" % k
        prefix = hashlib.sha256(blob).hexdigest()[:4]
        if prefix in seen:
            return seen[prefix], blob
        seen[prefix] = blob
    raise AssertionError("no two hashes shared a 4-hex-digit prefix")


def test_a_fanout_folder_made_by_another_writer_is_fsynced_once_by_this_one(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    """The other writer may not have fsynced it yet; this store must not rely on that."""
    root = tmp_path.resolve()
    store = ImageStore(root)
    first, second = _two_blobs_in_one_folder()
    h = hashlib.sha256(first).hexdigest()
    (root / h[:2] / h[2:4]).mkdir(parents=True)  # created by someone else
    fsynced.clear()
    store.put_bytes(first)
    assert root in fsynced and root / h[:2] in fsynced
    fsynced.clear()
    stored = store.put_bytes(second)
    assert stored.path.parent == root / h[:2] / h[2:4]
    assert fsynced == [stored.path.parent / "TEMP", stored.path.parent]  # only file and folder
