"""Tests of :mod:`monai_pneumonia.data.discovery`."""

from __future__ import annotations

import os

import pytest

from monai_pneumonia.data.discovery import find_images, is_skipped_name, iter_images
from tests.data import write_tiny_dicom, write_tiny_image


@pytest.fixture
def tree(tmp_path):
    """A PACS-like folder: extensionless DICOM, PNG, JPEG, a text file, hidden entries, a DICOMDIR."""
    write_tiny_dicom(tmp_path / "b" / "IM00002", "1.2.3.2")
    write_tiny_dicom(tmp_path / "a" / "deep" / "x.dcm", "1.2.3.1")
    write_tiny_dicom(tmp_path / "DICOMDIR", "1.2.3.9")
    write_tiny_image(tmp_path / "c.png")
    write_tiny_image(tmp_path / "a" / "d.jpeg", "JPEG")
    write_tiny_image(tmp_path / ".hidden.png")
    write_tiny_image(tmp_path / ".cache" / "e.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "random.bin").write_bytes(os.urandom(600))
    return tmp_path


def _relative(paths, root):
    return [os.path.relpath(path, root) for path in paths]


def test_find_images_by_content_sorted_and_skips(tree):
    expected = ["a/d.jpeg", "a/deep/x.dcm", "b/IM00002", "c.png"]
    assert _relative(find_images(tree), tree) == expected
    assert _relative(find_images(str(tree), recursive=False), tree) == ["c.png"]


def test_iter_images_is_lazy_and_deterministic(tree):
    iterator = iter_images(tree)
    assert iter(iterator) is iterator
    assert _relative(iterator, tree) == ["c.png", "a/d.jpeg", "a/deep/x.dcm", "b/IM00002"]  # files, then folders


def test_explicit_files_are_returned_even_when_not_images(tree):
    given = [tree / "notes.txt", tree / "missing.png", tree / "c.png", tree / "c.png"]
    assert _relative(find_images(given), tree) == ["c.png", "missing.png", "notes.txt"]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_loops_end_and_linked_folders_are_searched_once(tree, tmp_path_factory):
    os.symlink(tree, tree / "a" / "loop")  # a loop back to the root
    outside = tmp_path_factory.mktemp("outside")
    write_tiny_image(outside / "linked.png")
    os.symlink(outside, tree / "link1")
    os.symlink(outside, tree / "link2")
    found = _relative(find_images([tree, tree]), tree)
    assert found == ["a/d.jpeg", "a/deep/x.dcm", "b/IM00002", "c.png", "link1/linked.png"]


def test_is_skipped_name():
    assert is_skipped_name(".DS_Store") and is_skipped_name("dicomdir") and not is_skipped_name("IM0001")


def test_formats_filter(tree):
    assert _relative(find_images(tree, formats=("dicom",)), tree) == ["a/deep/x.dcm", "b/IM00002"]


def test_files_named_as_images_are_kept_even_when_unreadable_and_the_rest_is_counted(tmp_path):
    """A broken ``.png``/``.dcm``/``.nii.gz`` reaches the loader (to be refused with a reason); a ``.txt`` is skipped."""
    write_tiny_image(tmp_path / "good.jpg", "JPEG")
    for name in ("broken.png", "truncated.DCM", "empty.nii.gz", "bad.jpeg"):
        (tmp_path / name).write_text("not an image")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "random.bin").write_bytes(os.urandom(600))
    skipped: list[str] = []
    found = find_images([tmp_path], skipped=skipped)
    assert _relative(found, tmp_path) == ["bad.jpeg", "broken.png", "empty.nii.gz", "good.jpg", "truncated.DCM"]
    assert sorted(_relative(skipped, tmp_path)) == ["notes.txt", "random.bin"]
    # a format filter still applies to names: a broken .png is not a DICOM of a PACS export
    assert _relative(find_images([tmp_path], formats=("dicom",)), tmp_path) == ["truncated.DCM"]
