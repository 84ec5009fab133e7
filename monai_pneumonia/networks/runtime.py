"""The network's forward pass in ONNX Runtime: the same float32 weights, exported once and cached by checkpoint.

On two CPU cores ONNX Runtime's fused float32 kernels run this network about 1.4x faster than eager PyTorch with
identical outputs (float32 rounding only), so decisions cannot move; Grad-CAM still needs the eager network's
gradients, which is why the eager module stays the bundle's ``network`` and this one is only its forward pass.
An int8 model is deliberately not offered: measured on the validation split it moved probabilities by up to 0.07
and flipped the decisions of the images the threshold was chosen at (``benchmarks/bench_inference.py --int8``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from monai.networks.utils import convert_to_onnx

__all__ = ["BACKENDS", "OnnxRuntimeNetwork", "default_cache_dir", "export_onnx", "runtime_network"]

logger = logging.getLogger(__name__)

#: ``backend`` values of :func:`runtime_network` (the bundle's ``backend`` knob).
BACKENDS = ("auto", "eager", "onnxruntime")
#: ONNX opset of the export.
OPSET = 17
_INPUT, _OUTPUT = "image", "logits"


def default_cache_dir() -> Path:
    """``$MONAI_PNEUMONIA_CACHE`` or ``$XDG_CACHE_HOME/monai-pneumonia`` (``~/.cache/monai-pneumonia``), then ``onnx/``."""
    if os.environ.get("MONAI_PNEUMONIA_CACHE"):
        return Path(os.environ["MONAI_PNEUMONIA_CACHE"]) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "monai-pneumonia" / "onnx"


def export_onnx(network: torch.nn.Module, path: str | os.PathLike, image_size: int = 224) -> Path:
    """Export ``network`` (float32, eval mode) to ONNX with a dynamic batch and image size (MONAI's ``convert_to_onnx``).

    Args:
        network: the eager network with its weights.
        path: the ``.onnx`` file to write (replaced atomically).
        image_size: side of the example input used for tracing.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = int(getattr(network, "in_channels", 1))
    spatial_dims = int(getattr(network, "spatial_dims", 2))
    example = torch.zeros((1, channels) + (image_size,) * spatial_dims)
    axes = {0: "batch"} | {2 + d: f"size{d}" for d in range(spatial_dims)}
    training = network.training
    network.eval()
    handle, partial = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings of the exporter, nothing actionable
            convert_to_onnx(network.float(), [example], input_names=[_INPUT], output_names=[_OUTPUT],
                            opset_version=OPSET, dynamic_axes={_INPUT: axes, _OUTPUT: {0: "batch"}}, filename=partial,
                            use_trace=True, dynamo=False)
        os.replace(partial, path)
    finally:
        network.train(training)
        Path(partial).unlink(missing_ok=True)
    return path


class OnnxRuntimeNetwork(torch.nn.Module):
    """A network's forward pass in an ONNX Runtime CPU session, as a module the bundle's engines can call.

    Args:
        path: the exported ``.onnx`` file (:func:`export_onnx`).
        operating_threshold: the checkpoint's decision threshold, kept as the eager network keeps it.
        num_threads: ONNX Runtime's intra-op threads (default: ``torch.get_num_threads()``).

    Inputs are cast to contiguous float32 on the CPU (an autocast or channels-last inferer around it changes
    nothing), outputs are float32 logits on the CPU. No gradients: use the eager network for Grad-CAM.
    """

    def __init__(self, path: str | os.PathLike, operating_threshold: float, num_threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime  # optional dependency: only this backend needs it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its warnings go to stdout-like sinks we do not own
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self.register_buffer("operating_threshold", torch.tensor(float(operating_threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch ``(N, C, *spatial)``."""
        array = torch.as_tensor(x).detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([_OUTPUT], {_INPUT: array})[0])

    def extra_repr(self) -> str:
        return f"path={os.fspath(self.path)!r}"


def _cache_key(network: torch.nn.Module, ckpt_path: str | os.PathLike | None) -> str:
    digest = hashlib.sha256(f"{torch.__version__}|{OPSET}|{network!r}".encode())
    if ckpt_path is not None and Path(ckpt_path).is_file():
        with open(ckpt_path, "rb") as source:  # the file's bytes, into the key with the torch version and network
            digest.update(hashlib.file_digest(source, "sha256").digest())
    else:  # no file: the weights themselves
        for name, tensor in network.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def runtime_network(
    network: torch.nn.Module,
    backend: str = "auto",
    ckpt_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    image_size: int = 224,
    cache_dir: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """The module that runs the bundle's forward passes: ``network`` itself or its ONNX Runtime export.

    The export of a checkpoint is cached under ``cache_dir`` by a hash of the checkpoint file, the network's
    structure and the torch version, so a one-shot command pays the export (a few seconds) once per model.

    Args:
        network: the eager network with its weights and ``operating_threshold`` loaded.
        backend: ``"eager"``; ``"onnxruntime"``; or ``"auto"``: ONNX Runtime on a CPU device when it is
            installed, else eager.
        ckpt_path: the checkpoint the weights came from (the cache key; default: hash the weights).
        device: where the bundle runs; ONNX Runtime is used on the CPU only.
        image_size: the traced input size (the export's spatial sizes are dynamic).
        cache_dir: default :func:`default_cache_dir`; when it cannot be written, a temporary folder.

    Returns:
        A module mapping an input batch to logits.

    Raises:
        ValueError: unknown ``backend``, or ``"onnxruntime"`` requested for a non-CPU device.
        ImportError: ``"onnxruntime"`` requested and ONNX Runtime is not installed.
        AttributeError: ``network`` has no ``operating_threshold`` (not the bundle's network).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    on_cpu = torch.device(device).type == "cpu"
    if backend == "eager":
        return network
    if backend == "onnxruntime" and not on_cpu:
        raise ValueError(f"backend 'onnxruntime' runs on the CPU only, not on {device}")
    if backend == "auto":
        if not on_cpu:
            return network
        try:
            import onnxruntime  # noqa: F401 - availability check
        except ImportError:
            logger.info("onnxruntime is not installed: the network runs in eager PyTorch")
            return network
    threshold = float(network.operating_threshold)  # AttributeError for a network without one: no guessed 0.5
    model = network.to("cpu")
    key = _cache_key(model, ckpt_path)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / f"{key}.onnx"
    if not target.is_file():
        try:
            export_onnx(model, target, image_size)
        except OSError as error:  # read-only home, full disk: export for this process only
            logger.warning("cannot cache the ONNX export in %s (%s); exporting to a temporary folder", folder,
                           type(error).__name__)
            target = export_onnx(model, Path(tempfile.mkdtemp(prefix="monai-pneumonia-onnx-")) / f"{key}.onnx",
                                 image_size)
    return OnnxRuntimeNetwork(target, threshold)
