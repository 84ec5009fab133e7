"""Ignite handlers of the bundle: operating threshold, prediction/evaluation writers and Grad-CAM overlays.

Every writer reads the decision threshold from the network's ``operating_threshold`` buffer, which the
:class:`OperatingThresholdHandler` sets from validation predictions during training and which travels in
``model.pt``: the threshold is stored with the model, never passed on the side.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.utils import evenly_divisible_all_gather, str2bool

from monai_pneumonia import __version__
from monai_pneumonia.decision import CLASS_NAMES, PNEUMONIA_INDEX, decide, positive_probability
from monai_pneumonia.errors import NoReadableInputError
from monai_pneumonia.networks.checkpoint import model_identity
from monai_pneumonia.registry import sha256_file
from monai_pneumonia.visualize import explain, render_cam, save_png
from monai_pneumonia.workflows.datasets import REFUSED_KEY
from monai_pneumonia.workflows.distributed import gather_results

__all__ = [
    "CAM_PATHS_KEY",
    "CLASS_NAMES",
    "CamWriter",
    "EvaluationWriter",
    "format_flags",
    "OperatingThresholdHandler",
    "PNEUMONIA_INDEX",
    "PredictionWriter",
    "operating_threshold",
    "pneumonia_probability",
    "predicted_class",
    "source_path",
    "write_predictions",
]

logger = logging.getLogger(__name__)

#: The decision rule lives in :mod:`monai_pneumonia.decision`; these names are kept for existing callers.
pneumonia_probability = positive_probability
predicted_class = decide
#: ``engine.state`` attribute where :class:`CamWriter` records ``{source path: overlay path}``.
CAM_PATHS_KEY = "cam_paths"


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return getattr(network, "module", network)


def operating_threshold(network: torch.nn.Module) -> float:
    """The decision threshold stored in the network (its ``operating_threshold`` buffer)."""
    return float(_unwrap(network).operating_threshold)


def source_path(item: dict, image_key: str = "image") -> str:
    """The file an output item came from (the loader records it as ``filename_or_obj`` metadata)."""
    image = item[image_key]
    meta = getattr(image, "meta", None) or item.get(f"{image_key}_meta_dict", {})
    return os.fspath(meta.get("filename_or_obj", ""))


def format_flags(meta: dict) -> str:
    """The loader's policy flags in image metadata (``meta["xray_flags"]``) as one ``;``-separated string."""
    flags = meta.get("xray_flags", "")
    return ";".join(map(str, flags)) if isinstance(flags, (list, tuple)) else str(flags or "")


def _loader_flags(item: dict, image_key: str = "image") -> str:
    """The loader's policy flags of an output item, ``""`` when none."""
    return format_flags(getattr(item[image_key], "meta", None) or item.get(f"{image_key}_meta_dict", {}))


def _class_index(label: Any) -> int:
    label = torch.as_tensor(label).reshape(-1)
    return int(label.argmax()) if label.numel() > 1 else int(label.item())


def _private_open(path: Path) -> Any:
    """Open a result file for writing, readable by its owner only (results may hold study identifiers).

    File names that are not valid UTF-8 (undecodable bytes, which Python holds as surrogates) are written with
    backslash escapes (``\\udce9``) rather than failing the whole run.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", newline="", encoding="utf-8", errors="backslashreplace")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV atomically: a temporary file in the same folder, then ``os.replace`` (never a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with _private_open(temp) as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            writer.writerows(rows)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_predictions(output_dir: str | os.PathLike, predictions: Sequence[dict], refused: Sequence[dict]) -> None:
    """Write ``predictions.csv`` and ``errors.csv`` (``image,error``).

    ``predictions.csv`` columns: ``image``, ``prob_pneumonia``, ``prediction`` (``NORMAL``/``PNEUMONIA``), then
    ``threshold`` (the stored operating threshold the prediction was decided at), ``cam`` (the Grad-CAM overlay
    written in the same run, empty without one), ``flags`` (the loader's policy flags, ``;``-separated), then the
    model's identity: ``model_sha256`` and ``site_profile_sha256`` (empty without a site profile).

    Args:
        output_dir: the folder (created if needed).
        predictions: ``{"image", "prob_pneumonia", "prediction", "threshold"[, "cam", "flags"]}`` per classified
            input (``prediction`` a name).
        refused: ``{"image", "error"}`` per refused input.
    """
    output_dir = Path(output_dir)
    _write_csv(output_dir / "errors.csv", ("image", "error"), [(r["image"], r["error"]) for r in refused])
    _write_csv(output_dir / "predictions.csv", ("image", "prob_pneumonia", "prediction", "threshold", "cam", "flags",
                                                "model_sha256", "site_profile_sha256"),
               [(r["image"], f"{r['prob_pneumonia']:.6f}", r["prediction"], f"{r['threshold']:.6f}",
                 r.get("cam", ""), r.get("flags", ""), r.get("model_sha256", ""), r.get("site_profile_sha256", ""))
                for r in predictions])


class OperatingThresholdHandler:
    """Choose the decision threshold on each validation pass and store it in the network.

    Attach it to the validation evaluator *before* the ``CheckpointSaver``: every saved checkpoint then carries
    the threshold chosen on its own validation predictions. Under DDP every rank must attach it (it gathers the
    predictions of all ranks). It also puts ``val_threshold``, ``val_sensitivity`` and ``val_specificity`` in
    ``engine.state.metrics`` for the stats handlers.

    Args:
        network: the model whose ``operating_threshold`` buffer is set (a DDP wrapper is unwrapped).
        method: a rule of :func:`monai_pneumonia.evaluation.choose_threshold` (``"youden"`` by default).
        output_transform: maps ``engine.state.output`` to ``(preds, labels)`` lists (default: the ``pred`` and
            ``label`` keys).
        method_kwargs: extra arguments of the selection method (e.g. ``{"target": 0.97}``).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        method: str = "youden",
        output_transform: Callable | None = None,
        method_kwargs: dict | None = None,
    ) -> None:
        self.network = network
        self.method = method
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.method_kwargs = method_kwargs or {}
        self._probs: list[float] = []
        self._labels: list[int] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._choose)

    def _reset(self, engine: Engine) -> None:
        self._probs, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        self._probs.extend(positive_probability(p) for p in preds)
        self._labels.extend(_class_index(y) for y in labels)

    def _choose(self, engine: Engine) -> None:
        # lazy: evaluation needs scikit-learn and SciPy, which the inference-only MONAI Label environment lacks
        from monai_pneumonia.evaluation import binary_metrics, choose_threshold

        probs = evenly_divisible_all_gather(torch.tensor(self._probs, dtype=torch.float64), concat=True)
        labels = evenly_divisible_all_gather(torch.tensor(self._labels, dtype=torch.int64), concat=True)
        probs, labels = probs.cpu().numpy(), labels.cpu().numpy()
        if len(np.unique(labels)) < 2:
            logger.warning("validation has a single class: operating threshold left at %.4f",
                           operating_threshold(self.network))
            return
        threshold = float(choose_threshold(labels, probs, method=self.method, **self.method_kwargs))
        _unwrap(self.network).set_operating_threshold(threshold)
        summary = binary_metrics(labels, probs, threshold, n_bootstrap=0)
        engine.state.metrics["val_threshold"] = threshold
        engine.state.metrics["val_sensitivity"] = summary["sensitivity"]
        engine.state.metrics["val_specificity"] = summary["specificity"]


class _ResultCollector:
    """Collects per-input results and refusals of an evaluation or inference run; subclasses write them.

    Args:
        output_dir: where the files go (created if needed).
        network: the model (its ``operating_threshold`` decides the predicted class).
        with_labels: collect ``label`` too (evaluation).
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module, with_labels: bool) -> None:
        self.output_dir = Path(output_dir)
        self.network = network
        self.with_labels = with_labels
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def _collect(self, engine: Engine) -> None:
        for item in engine.state.output or []:
            record = {"image": source_path(item), "prob_pneumonia": positive_probability(item["pred"]),
                      "flags": _loader_flags(item)}
            if self.with_labels:
                record["label"] = _class_index(item["label"])
            self.records.append(record)

    def _complete(self, engine: Engine) -> None:
        threshold = operating_threshold(self.network)
        overlays = getattr(engine.state, CAM_PATHS_KEY, {})
        for record in self.records:
            record["prediction"] = decide(record["prob_pneumonia"], threshold)
            record["cam"] = overlays.get(record["image"], "")
        refused = list(getattr(engine.state, REFUSED_KEY, []))
        self.records, refused, is_writer = gather_results(engine, self.records, refused)  # torchrun: one writer
        if not is_writer:
            return
        _write_csv(self.output_dir / "errors.csv", ("image", "error"), [(r["image"], r["error"]) for r in refused])
        self.write(engine, threshold, refused)

    def write(self, engine: Engine, threshold: float, refused: list[dict]) -> None:
        raise NotImplementedError


class PredictionWriter(_ResultCollector):
    """Write ``predictions.csv`` and ``errors.csv`` with :func:`write_predictions` (columns documented there).

    Args:
        output_dir: where the files go.
        network: the model (its ``operating_threshold`` decides ``NORMAL`` or ``PNEUMONIA``).

    Raises:
        NoReadableInputError: at completion, when no input at all could be read (after writing ``errors.csv``),
            so that the run exits non-zero.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module) -> None:
        super().__init__(output_dir, network, with_labels=False)

    def write(self, engine: Engine, threshold: float, refused: list[dict]) -> None:
        identity = model_identity(self.network)
        rows = [{**r, **identity, "prediction": CLASS_NAMES[r["prediction"]], "threshold": threshold} for r in self.records]
        write_predictions(self.output_dir, rows, refused)
        logger.info("%d predictions (threshold %.4f), %d refused, written to %s",
                    len(rows), threshold, len(refused), self.output_dir)
        if not rows:
            raise NoReadableInputError(f"no input could be read: {len(refused)} refused, see {self.output_dir / 'errors.csv'}")


class EvaluationWriter(_ResultCollector):
    """Write ``metrics.json``, ``predictions.csv``, ``errors.csv`` and the HTML ``report.html``.

    Metrics (pneumonia positive, 95% CIs) come from :func:`monai_pneumonia.evaluation.binary_metrics` at the
    model's stored threshold. The report's Grad-CAM gallery shows false negatives first, then false positives,
    then correct cases; the maps are computed by re-running ``preprocessing`` on those cases only.

    Args:
        output_dir: where the files go.
        network: the evaluated model.
        preprocessing: the evaluation preprocessing (the same as for inference), used for the gallery.
        gallery_size: Grad-CAM overlays per group (false negatives, false positives, true positives, true
            negatives); 0 disables the gallery.
        n_bootstrap: bootstrap resamples for the confidence intervals.
        title: the report's heading.
        checkpoint: the evaluated ``model.pt``; the report names it with its SHA-256 (with the threshold, the
            package version and the date), so a reader knows exactly which model the figures belong to.
        data_source: what was evaluated, in words (e.g. ``"'test' list of datalist.json"``), shown in the report.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        network: torch.nn.Module,
        preprocessing: Callable | None = None,
        gallery_size: int = 4,
        n_bootstrap: int = 2000,
        title: str = "Pneumonia classifier: evaluation report",
        checkpoint: str | os.PathLike | None = None,
        data_source: str | None = None,
    ) -> None:
        super().__init__(output_dir, network, with_labels=True)
        self.preprocessing = preprocessing
        self.gallery_size = gallery_size
        self.n_bootstrap = n_bootstrap
        self.title = title
        self.checkpoint = checkpoint
        self.data_source = data_source

    def model_info(self, threshold: float, refused: int) -> dict[str, Any]:
        """The facts the report's header states about the model and the data."""
        info: dict[str, Any] = {"threshold": threshold}
        if self.checkpoint is not None and Path(self.checkpoint).is_file():
            info["model"] = f"{os.fspath(self.checkpoint)} (SHA-256 {sha256_file(self.checkpoint)})"
        else:
            info["model"] = "checkpoint not recorded"
        profile = getattr(_unwrap(self.network), "site_profile", None)
        if profile is not None:
            info["site profile"] = (f"{profile.path} (SHA-256 {profile.sha256}), rule {profile.rule}, threshold "
                                    f"{profile.threshold:.4f} in place of the model's "
                                    f"{_unwrap(self.network).shipped_threshold:.4f}")
        info["software"] = f"monai-pneumonia {__version__}"
        if self.data_source:
            info["evaluated"] = self.data_source
        info["refused inputs"] = refused
        return info

    def write(self, engine: Engine, threshold: float, refused: list[dict]) -> None:
        # lazy: evaluation needs scikit-learn and SciPy, which the inference-only MONAI Label environment lacks
        from monai_pneumonia.evaluation import binary_metrics, write_report

        if not self.records:
            raise NoReadableInputError(f"nothing to evaluate: {len(refused)} inputs refused, see {self.output_dir / 'errors.csv'}")
        labels = np.array([r["label"] for r in self.records])
        probs = np.array([r["prob_pneumonia"] for r in self.records])
        metrics = binary_metrics(labels, probs, threshold, n_bootstrap=self.n_bootstrap)
        metrics["n_refused"] = len(refused)
        metrics.update(model_identity(self.network))
        with _private_open(self.output_dir / "metrics.json") as stream:
            json.dump(metrics, stream, indent=2)
        identity = model_identity(self.network)
        rows = [(r["image"], r["label"], f"{r['prob_pneumonia']:.6f}", CLASS_NAMES[r["prediction"]], f"{threshold:.6f}",
                 r["flags"], identity["model_sha256"], identity["site_profile_sha256"]) for r in self.records]
        _write_csv(self.output_dir / "predictions.csv",
                   ("image", "label", "prob_pneumonia", "prediction", "threshold", "flags", "model_sha256",
                    "site_profile_sha256"), rows)
        gallery = self._gallery_records()
        if gallery:
            logger.info("report: Grad-CAM overlays for %d gallery cases", len(gallery))
        for done, record in enumerate(gallery, start=1):
            record["cam_png"] = self._cam_overlay(record, threshold)
            if done % 8 == 0 or done == len(gallery):
                logger.info("report: Grad-CAM overlay %d/%d", done, len(gallery))
        write_report(self.records, metrics, self.output_dir / "report.html", title=self.title,
                     model_info=self.model_info(threshold, len(refused)))
        logger.info("report written to %s", self.output_dir / "report.html")
        logger.info("evaluation of %d images: %s", len(self.records),
                    ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "sensitivity", "specificity", "auc")
                              if metrics.get(k) is not None))

    def _gallery_records(self) -> list[dict]:
        if self.gallery_size <= 0 or self.preprocessing is None:
            return []
        groups: dict[tuple[int, int], list[dict]] = {}
        for record in self.records:
            groups.setdefault((record["label"], record["prediction"]), []).append(record)
        # false negatives (the dangerous misses), false positives, true positives, true negatives
        order = ((1, 0), (0, 1), (1, 1), (0, 0))
        worst_first = {(1, 0): 1, (0, 1): -1, (1, 1): -1, (0, 0): 1}  # most confident mistakes / clearest hits
        chosen = []
        for group in order:
            cases = sorted(groups.get(group, []), key=lambda r: worst_first[group] * r["prob_pneumonia"])
            chosen.extend(cases[: self.gallery_size])
        return chosen

    def _cam_overlay(self, record: dict, threshold: float) -> np.ndarray:
        display, cam = explain(self.network, self.preprocessing, record["image"])
        return render_cam(display, cam, record["prob_pneumonia"], threshold)


class CamWriter:
    """Save a Grad-CAM overlay PNG for every classified input of an inference run.

    Each overlay is drawn by :func:`~monai_pneumonia.visualize.render_cam` on the film's display image (the loader's
    output, at its aspect ratio), with a colour scale and the probability and decision as a caption: the same
    picture as ``predict --save-cam`` and the DICOM listener's Secondary Capture. Files are
    ``<output_dir>/<name>-<hash>.png``, where ``name`` is the source's file name *with* its extension
    (``IM-1.dcm-….png`` and ``IM-1.jpeg-….png`` of one film are told apart at a glance) and the hash of the full
    source path keeps files of the same name from different folders apart. The path of each overlay is kept in
    ``engine.state.cam_paths`` (source path -> overlay path) for :class:`PredictionWriter`'s ``cam`` column.

    Args:
        output_dir: the overlay folder.
        network: the model.
        preprocessing: the inference preprocessing (its loader gives the display image).
        enabled: attach nothing when False (so a config can switch it with a knob such as ``save_cam``); the
            strings of a command line (``--save_cam true``) are accepted.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module, preprocessing: Callable | None = None,
                 enabled: bool | str = True) -> None:
        self.output_dir = Path(output_dir)
        self.network = network
        self.preprocessing = preprocessing
        self.enabled = str2bool(enabled)

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (nothing when disabled)."""
        if self.enabled:
            if self.preprocessing is None:
                raise ValueError("CamWriter needs the inference preprocessing: it draws on the loader's display image")
            engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, CAM_PATHS_KEY, {}))
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._save)

    @staticmethod
    def overlay_name(path: str) -> str:
        """The overlay file name for a source path."""
        digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:8]
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).name)
        return f"{name}-{digest}.png"

    def _save(self, engine: Engine) -> None:
        threshold = operating_threshold(self.network)
        written = getattr(engine.state, CAM_PATHS_KEY)
        for item in engine.state.output or []:
            path = source_path(item)
            display, cam = explain(self.network, self.preprocessing, path)
            overlay = render_cam(display, cam, positive_probability(item["pred"]), threshold)
            target = self.output_dir / self.overlay_name(path)
            save_png(overlay, target)
            written[path] = os.fspath(target)
