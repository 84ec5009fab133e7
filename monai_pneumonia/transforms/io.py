"""Loading transforms: any chest radiograph file -> one normalised ``MetaTensor``.

Output of :class:`LoadXray` / :class:`LoadXrayd`, whatever the format (DICOM, PNG, JPEG, NIfTI-2D):

* a float32 ``MetaTensor`` of shape ``(1, W, H)``, values in [0, 1], 1 = bright (bone white), as a
  radiologist sees it (DICOM display pipeline, MONOCHROME1 inverted: see :mod:`monai_pneumonia.io.dicom`);
* **orientation**: MONAI's convention, the one ``LoadImage`` gives for PIL and pydicom images: the first
  spatial axis is x (the column index, left to right as displayed), the second is y (the row index, top to
  bottom), i.e. ``tensor[0, x, y] == picture[y, x]``. NIfTI voxel arrays are already x-first and are kept
  as stored. Use ``tensor[0].T`` to get a picture in row-major order.

Metadata (``tensor.meta``), the same keys for every format so batches collate with ``list_data_collate``:

* ``filename_or_obj`` (source path), ``format`` (``dicom``/``png``/``jpeg``/``nifti``);
* ``spatial_shape`` ``[W, H]`` (the decoded size; smaller than the file's for a JPEG 2000 DICOM decoded at a
  reduced resolution, see ``target_size``), ``original_rows``, ``original_columns``, ``original_channel_dim`` (0: the
  channel axis added by the loader, so a later ``EnsureChannelFirst`` changes nothing; the
  :class:`~monai_pneumonia.io.XrayDicomReader` gives NaN, "no channel", as MONAI readers do);
* ``spacing`` ``[x, y]`` in mm (``[1, 1]`` when unknown), ``spacing_known``, ``spacing_source``
  (``PixelSpacing``, ``ImagerPixelSpacing`` -- ``"0\\0"`` counts as unknown -- or ``pixdim``), and ``affine``
  (``diag(x, y, 1, 1)``, or the NIfTI file's own);
* DICOM attributes by keyword, ``""`` when absent or not DICOM: ``StudyInstanceUID``, ``SeriesInstanceUID``,
  ``SOPInstanceUID``, ``Modality``, ``ViewPosition``, ``BodyPartExamined``, ``PhotometricInterpretation``,
  ``TransferSyntaxUID``;
* ``xray_flags``: policy flags joined by ``;`` (``""`` when none), e.g. ``"view:LL"``, see
  :mod:`monai_pneumonia.io.policy`; ``intensity_rule`` (how values became [0, 1]); ``bits_stored``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import get_equivalent_dtype

from monai_pneumonia.io import load_xray
from monai_pneumonia.io.policy import DEFAULT_MAX_PIXELS, XrayPolicy

__all__ = ["LoadXray", "LoadXrayd", "LoadXrayD", "LoadXrayDict"]


class LoadXray(Transform):
    """Load a radiograph file as a ``(1, W, H)`` float32 ``MetaTensor`` in [0, 1] (see the module docstring).

    Args:
        strict: refuse wrong body part / view, secondary captures and FOR PROCESSING images instead of
            logging a warning and flagging them in ``meta["xray_flags"]``.
        max_pixels: largest rows x columns accepted (checked before decoding).
        policy: a full :class:`~monai_pneumonia.io.policy.XrayPolicy`; overrides ``strict`` and ``max_pixels``.
        image_only: return only the image (default); ``False`` returns ``(image, meta)`` like MONAI's ``LoadImage``.
        dtype: output dtype (float32 by default).
        target_size: the smallest side a later resize will produce. JPEG 2000 DICOM images are then decoded at
            the smallest wavelet resolution level (1/2, 1/4, ...) that keeps both sides at least this, which is
            several times faster for large films; PixelSpacing is scaled to match. ``None`` (default) decodes
            at full resolution. See :func:`~monai_pneumonia.io.dicom.read_dicom`.

    Raises:
        XrayInputError: (when called) the input is not an acceptable radiograph; the message names the file.
    """

    def __init__(
        self,
        strict: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        policy: XrayPolicy | None = None,
        image_only: bool = True,
        dtype: torch.dtype | np.dtype | str | None = torch.float32,
        target_size: int | None = None,
    ) -> None:
        if target_size is not None and int(target_size) < 1:
            raise ValueError(f"target_size must be a positive int or None, got {target_size!r}.")
        self.policy = policy or XrayPolicy(strict=strict, max_pixels=max_pixels)
        self.image_only = image_only
        self.dtype = dtype
        self.target_size = None if target_size is None else int(target_size)

    def __call__(self, filename: str | os.PathLike) -> MetaTensor | tuple[MetaTensor, dict]:
        """Load ``filename``.

        Args:
            filename: path of a DICOM, PNG, JPEG or NIfTI file.

        Returns:
            The image, or ``(image, meta)`` when ``image_only`` is False.
        """
        image, meta = load_xray(filename, self.policy, self.target_size)
        array = np.ascontiguousarray(image.T)[None]  # (rows, cols) -> MONAI's (1, W, H)
        affine = torch.as_tensor(meta.pop("affine"), dtype=torch.float64)
        meta["original_channel_dim"] = 0  # the channel added here: EnsureChannelFirst(d) afterwards is a no-op
        tensor = MetaTensor(torch.from_numpy(array), affine=affine, meta=meta)
        if self.dtype is not None:
            tensor = tensor.to(dtype=get_equivalent_dtype(self.dtype, torch.Tensor))
        return tensor if self.image_only else (tensor, dict(tensor.meta))


class LoadXrayd(MapTransform):
    """Dictionary version of :class:`LoadXray`: ``data[key]`` (a path) becomes the ``MetaTensor``.

    Usable in ``Compose`` and bundle configs: ``{"_target_": "monai_pneumonia.transforms.LoadXrayd", "keys": "image"}``.

    Args:
        keys: keys holding file paths.
        allow_missing_keys: skip keys absent from the data instead of raising ``KeyError``.
        strict: see :class:`LoadXray`.
        max_pixels: see :class:`LoadXray`.
        policy: see :class:`LoadXray`.
        image_only: ``True`` (default) stores only the ``MetaTensor`` (its ``.meta`` holds the metadata);
            ``False`` also stores a copy of the metadata under ``f"{key}_{meta_key_postfix}"``.
        meta_key_postfix: postfix of the metadata key when ``image_only`` is False.
        dtype: see :class:`LoadXray`.
        target_size: see :class:`LoadXray`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        allow_missing_keys: bool = False,
        strict: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        policy: XrayPolicy | None = None,
        image_only: bool = True,
        meta_key_postfix: str = "meta_dict",
        dtype: torch.dtype | np.dtype | str | None = torch.float32,
        target_size: int | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXray(
            strict=strict, max_pixels=max_pixels, policy=policy, image_only=True, dtype=dtype, target_size=target_size
        )
        self.image_only = image_only
        self.meta_key_postfix = meta_key_postfix

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """Load every key's file.

        Raises:
            XrayInputError: an input is refused.
            KeyError: a key is missing and ``allow_missing_keys`` is False.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            image = self.loader(d[key])
            d[key] = image
            if not self.image_only:
                d[f"{key}_{self.meta_key_postfix}"] = dict(image.meta)
        return d


LoadXrayD = LoadXrayDict = LoadXrayd
