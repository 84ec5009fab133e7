"""What one decollated engine output item holds: its source file, the loader's policy flags and its label."""

from __future__ import annotations

import os
from typing import Any

import torch

from monai_pneumonia.results import format_flags

__all__ = ["class_index", "item_flags", "source_path"]


def _meta(item: dict, image_key: str) -> dict:
    return getattr(item[image_key], "meta", None) or item.get(f"{image_key}_meta_dict", {})


def source_path(item: dict, image_key: str = "image") -> str:
    """The file an output item came from (the loader records it as ``filename_or_obj`` metadata)."""
    return os.fspath(_meta(item, image_key).get("filename_or_obj", ""))


def item_flags(item: dict, image_key: str = "image") -> str:
    """The loader's policy flags of an output item, ``;``-separated (``""`` when none)."""
    return format_flags(_meta(item, image_key))


def class_index(label: Any) -> int:
    """The class index of a label: a one-hot vector or a single index."""
    label = torch.as_tensor(label).reshape(-1)
    return int(label.argmax()) if label.numel() > 1 else int(label.item())
