"""Per-input results of a run spread over ``torchrun`` processes, merged in input order for one writer.

Under ``multi_gpu_evaluate.json`` each process evaluates its own shard of the inputs (MONAI's
``DistributedSampler``, interleaved). The writers then gather every process's records and refusals
(``torch.distributed.all_gather_object``), put them back in the order of the run's input list and let rank 0
write the files; the other ranks write nothing. Without an initialised process group nothing changes.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch.distributed as dist
from ignite.engine import Engine

from monai_pneumonia.results import Refusal

__all__ = ["gather_results"]


def _input_order(engine: Engine, image_key: str = "image") -> dict[str, int]:
    """Position of each input path in the run's data list (first occurrence)."""
    dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
    order: dict[str, int] = {}
    for position, item in enumerate(getattr(dataset, "data", None) or []):
        if isinstance(item, dict) and image_key in item:
            order.setdefault(str(item[image_key]), position)
    return order


def gather_results(engine: Engine, records: list[dict], refused: list[Refusal]) -> tuple[list[dict], list[Refusal], bool]:
    """Merge the records and refusals of every process, in input order.

    Args:
        engine: the evaluator (its data loader's dataset gives the input order).
        records: this process's per-input results (each with ``image``).
        refused: this process's refusals.

    Returns:
        ``(records, refused, is_writer)``: everything when distributed (``is_writer`` on rank 0 only), else the
        arguments unchanged and ``True``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return records, refused, True
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (records, refused))
    order = _input_order(engine)
    last = len(order)

    def position(image: str) -> int:
        return order.get(str(image), last)

    all_records = itertools.chain.from_iterable(part[0] for part in gathered)
    all_refused = itertools.chain.from_iterable(part[1] for part in gathered)
    merged = sorted(all_records, key=lambda record: position(record["image"]))
    merged_refused = sorted(all_refused, key=lambda refusal: position(refusal.image))
    return merged, merged_refused, dist.get_rank() == 0
