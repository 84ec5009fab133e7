"""Acceptance policy: which inputs are chest radiographs this plugin will read.

Hard refusals (always an :class:`~monai_pneumonia.errors.XrayInputError`):

* **Modality** (PS3.3 C.7.3.1.1.1) outside the projection-radiography allow-list ``CR``, ``DX``, ``RG``.
  ``OT`` (Other, the usual Modality of Secondary Capture, SOP Class 1.2.840.10008.5.1.4.1.1.7*) or a missing
  Modality is accepted but *flagged* ``secondary_capture``: public chest X-ray sets are often converted to
  DICOM that way. A Secondary Capture that declares a cross-sectional modality (CT, MR, ...) is refused.
* **Frames**: NumberOfFrames > 1 (cine, tomosynthesis, multi-frame MR) -- one radiograph is one frame.
* **Samples / photometric interpretation** (PS3.3 C.7.6.3.1.2): only ``MONOCHROME1``/``MONOCHROME2`` with one
  sample per pixel. RGB, YBR_* and PALETTE COLOR are refused: a colour image is not a radiograph and no grey
  conversion is guessed.
* **Size**: more than :data:`DEFAULT_MAX_PIXELS` pixels (rows x columns), checked from the header *before*
  any decoding (a 4300 x 3500 detector at 0.1 mm is 15 Mpx, a full-field mammogram 24 Mpx, so 40 Mpx leaves
  room for any real radiograph while a declared 60000 x 60000 image cannot exhaust memory), or a zero side.

Soft rules (default: log a warning and add a flag to ``meta["xray_flags"]``; ``strict=True``: refuse):

* BodyPartExamined (0018,0015) present and not ``CHEST`` -> flag ``body_part:<value>``.
* ViewPosition (0018,5101) present and not ``PA``/``AP`` -> flag ``view:<value>`` (e.g. ``view:LL``).
* Secondary Capture / ``OT`` -> flag ``secondary_capture``.
* Presentation Intent ``FOR PROCESSING`` (raw detector data, not meant for display) -> flag ``for_processing``.

Age (intended use: children; the training films are of children aged 1-5): PatientAge (0010,1010, an AS value
such as ``004Y``) or, when it is absent, PatientBirthDate (0010,0030) with StudyDate, AcquisitionDate or
ContentDate gives the age at the film; outside ``ages`` (default 0 to under 18 years) -> flag
``age_outside_intended_use`` (``refuse_age=True``: refuse). A value that cannot be read -> flag ``age_unreadable``.
No age in the header -> no flag. Neither the flag nor the reason holds the age or a date (PHI).

Missing BodyPartExamined or ViewPosition (frequent in PACS exports) is flagged ``body_part_missing`` /
``view_missing`` for information only and never refused, even when strict. PNG, JPEG and NIfTI carry no such
attributes and get no flags.

:meth:`XrayPolicy.check_header` applies every rule to a DICOM header, in one order, for the loader
(:func:`~monai_pneumonia.io.dicom.read_dicom`) and the DICOM service's screening
(:func:`~monai_pneumonia.service.screening.screen`) alike.

``meta["xray_flags"]`` is a ``;``-joined string (``""`` when clean), not a list: MONAI's
``list_data_collate`` cannot batch lists of different lengths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.valuerep import DA

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.results import FLAGS_KEY, join_flags

__all__ = [
    "AGE_FLAG",
    "ATYPICAL_FLAG",
    "DEFAULT_AGES",
    "DEFAULT_MAX_PIXELS",
    "DICOM_META_KEYWORDS",
    "MONOCHROME",
    "PROJECTION_MODALITIES",
    "SECONDARY_CAPTURE_MODALITIES",
    "XrayPolicy",
    "header_text",
    "make_meta",
    "patient_age_years",
]

logger = logging.getLogger(__name__)

#: The intended population's ages in years, ``[low, high)``: children (the training films: ages 1-5).
DEFAULT_AGES = (0.0, 18.0)
#: The flag of a film whose header puts the patient outside :data:`DEFAULT_AGES` (or the policy's ``ages``).
AGE_FLAG = "age_outside_intended_use"
#: The flag of a film the intended-use gate classified but found unlike the training films
#: (:mod:`monai_pneumonia.networks.atypicality`).
ATYPICAL_FLAG = "atypical"
_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
#: Largest accepted image, rows x columns (see the module docstring for the reasoning).
DEFAULT_MAX_PIXELS = 40_000_000
#: Projection radiography modalities (PS3.3 C.7.3.1.1.1): Computed Radiography, Digital Radiography, Radiographic imaging.
PROJECTION_MODALITIES = ("CR", "DX", "RG")
#: Modalities of converted / captured images, accepted with the ``secondary_capture`` flag.
SECONDARY_CAPTURE_MODALITIES = ("OT", "")
#: Photometric interpretations of a grey radiograph (PS3.3 C.7.6.3.1.2).
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def header_text(ds, keyword: str) -> str:
    """The value of a DICOM attribute as stripped text: the first value of a multi-valued one, ``""`` when absent."""
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, str) and isinstance(value, Sequence):
        value = value[0] if len(value) else ""
    return str(value).strip()


@dataclass(frozen=True)
class XrayPolicy:
    """What the loader accepts.

    Args:
        strict: refuse inputs that break a soft rule (wrong body part or view, secondary capture,
            for-processing) instead of warning and flagging them.
        max_pixels: largest rows x columns accepted, checked before decoding.
        modalities: accepted DICOM Modality values.
        body_parts: accepted BodyPartExamined values (upper-cased before comparing).
        views: accepted ViewPosition values.
        allow_secondary_capture: under ``strict``, still accept (and flag) secondary captures, as the DICOM
            service does (:mod:`monai_pneumonia.service.screening`).
        ages: the intended population's ages in years, ``[low, high)``.
        refuse_age: refuse a film whose header age is outside ``ages`` (default: flag :data:`AGE_FLAG`).
    """

    strict: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    modalities: tuple[str, ...] = PROJECTION_MODALITIES
    body_parts: tuple[str, ...] = ("CHEST",)
    views: tuple[str, ...] = ("PA", "AP")
    allow_secondary_capture: bool = False
    ages: tuple[float, float] = DEFAULT_AGES
    refuse_age: bool = False

    def check_header(self, path: str | os.PathLike | None, ds, pixel_data: bool = True) -> list[str]:
        """Apply every rule to a DICOM data set's header, before any pixel is decoded.

        In this order: modality; Pixel Data present; photometric interpretation and samples per pixel; frames;
        size; BitsAllocated and BitsStored present; body part and view; presentation intent; age.

        Args:
            path: the file, for messages (``None`` for a data set in memory).
            ds: the pydicom data set.
            pixel_data: refuse a data set without Pixel Data (7FE0,0010); ``False`` for a header read without
                its pixels (``stop_before_pixels``).

        Returns:
            The flags raised.

        Raises:
            XrayInputError: a hard rule is broken, or a soft one under ``strict``.
            TypeError: an attribute holds a value of the wrong type (callers word it without the value: PHI).
            ValueError: likewise.
        """
        flags = self.check_modality(path, header_text(ds, "Modality"))
        if pixel_data and "PixelData" not in ds:
            other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
            raise XrayInputError(path, f"no pixel data ({other[0]} is not supported)" if other else "no pixel data")
        self.check_photometric(path, header_text(ds, "PhotometricInterpretation"), int(ds.get("SamplesPerPixel", 1)))
        self.check_frames(path, int(ds.get("NumberOfFrames", 1) or 1))
        self.check_size(path, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
        for keyword, tag in (("BitsAllocated", "(0028,0100)"), ("BitsStored", "(0028,0101)")):
            if keyword not in ds:
                raise XrayInputError(path, f"missing {keyword} {tag}")
        flags += self.check_anatomy(path, header_text(ds, "BodyPartExamined"), header_text(ds, "ViewPosition"))
        flags += self.check_for_processing(path, header_text(ds, "PresentationIntentType"))
        flags += self.check_age(path, ds)
        return flags

    # -- hard rules ---------------------------------------------------------------------------------------

    def check_size(self, path: str | os.PathLike | None, rows: int, columns: int) -> None:
        """Refuse empty or absurdly large images (call before decoding).

        Raises:
            XrayInputError: a side is 0 or rows x columns exceeds ``max_pixels``.
        """
        rows, columns = int(rows), int(columns)
        if rows <= 0 or columns <= 0:
            raise XrayInputError(path, f"image has no pixels ({rows} rows x {columns} columns)")
        if rows * columns > self.max_pixels:
            raise XrayInputError(
                path,
                f"image too large: {rows} x {columns} = {rows * columns} pixels exceeds the limit of "
                f"{self.max_pixels} pixels (checked before decoding)",
            )

    def check_frames(self, path: str | os.PathLike | None, frames: int) -> None:
        """Refuse multi-frame images.

        Raises:
            XrayInputError: more than one frame.
        """
        if int(frames) > 1:
            raise XrayInputError(path, f"multi-frame image ({int(frames)} frames); a radiograph has one frame")

    def check_photometric(self, path: str | os.PathLike | None, photometric: str, samples: int) -> None:
        """Accept only grey images (PS3.3 C.7.6.3.1.2).

        Raises:
            XrayInputError: not MONOCHROME1/MONOCHROME2 or more than one sample per pixel.
        """
        if photometric not in MONOCHROME or int(samples) != 1:
            raise XrayInputError(
                path,
                f"unsupported photometric interpretation {photometric or '(missing)'!r} with {samples} "
                "sample(s) per pixel; only MONOCHROME1/MONOCHROME2 radiographs are accepted",
            )

    def check_modality(self, path: str | os.PathLike | None, modality: str) -> list[str]:
        """Accept projection radiography, flag secondary captures, refuse the rest.

        Returns:
            The flags raised (``["secondary_capture"]`` or none).

        Raises:
            XrayInputError: a modality outside the allow-list, or a secondary capture under ``strict``.
        """
        modality = (modality or "").strip().upper()
        if modality in self.modalities:
            return []
        if modality in SECONDARY_CAPTURE_MODALITIES:
            reason = f"secondary capture (Modality {modality or 'missing'!r})"
            return self._soft(path, "secondary_capture", reason, refuse=not self.allow_secondary_capture)
        raise XrayInputError(
            path,
            f"modality {modality!r} is not projection radiography (accepted: {', '.join(self.modalities)})",
        )

    # -- soft rules ---------------------------------------------------------------------------------------

    def check_anatomy(self, path: str | os.PathLike | None, body_part: str, view: str) -> list[str]:
        """Judge BodyPartExamined and ViewPosition.

        Returns:
            Flags: ``body_part:<X>``, ``view:<X>``, ``body_part_missing``, ``view_missing``.

        Raises:
            XrayInputError: under ``strict``, a present body part or view outside the accepted ones.
        """
        flags: list[str] = []
        body_part = (body_part or "").strip().upper()
        view = (view or "").strip().upper()
        if not body_part:
            flags.append("body_part_missing")
        elif body_part not in self.body_parts:
            flags += self._soft(path, f"body_part:{body_part}", f"body part {body_part!r} is not a chest")
        if not view:
            flags.append("view_missing")
        elif view not in self.views:
            flags += self._soft(path, f"view:{view}", f"view position {view!r} is not PA or AP (e.g. a lateral view)")
        return flags

    def check_for_processing(self, path: str | os.PathLike | None, intent: str) -> list[str]:
        """Flag (or under ``strict`` refuse) raw FOR PROCESSING images (PS3.3 C.8.11.1.1.1)."""
        if (intent or "").strip().upper() == "FOR PROCESSING":
            return self._soft(path, "for_processing", "FOR PROCESSING image (raw detector data, not for display)")
        return []

    def check_age(self, path: str | os.PathLike | None, ds) -> list[str]:
        """Flag (``refuse_age``: refuse) a patient outside the intended ages; the age never enters a message.

        Returns:
            ``[AGE_FLAG]``, ``["age_unreadable"]`` or none.

        Raises:
            XrayInputError: outside ``ages`` under ``refuse_age``.
        """
        try:
            years = patient_age_years(ds)
        except ValueError:
            logger.warning("%s: patient age in the header cannot be read; flagged 'age_unreadable'",
                           os.fspath(path) if path else "<memory>")
            return ["age_unreadable"]
        low, high = self.ages
        if years is None or low <= years < high:
            return []
        reason = f"patient age outside the intended population ({low:g} to under {high:g} years)"
        if self.refuse_age:
            raise XrayInputError(path, f"{reason}; refused because refuse_age=True")
        logger.warning("%s: %s; loaded and flagged %r", os.fspath(path) if path else "<memory>", reason, AGE_FLAG)
        return [AGE_FLAG]

    def _soft(self, path: str | os.PathLike | None, flag: str, reason: str, refuse: bool = True) -> list[str]:
        if self.strict and refuse:
            raise XrayInputError(path, f"{reason}; refused because strict=True")
        logger.warning("%s: %s; loaded and flagged %r", os.fspath(path) if path else "<memory>", reason, flag)
        return [flag]


def patient_age_years(ds) -> float | None:
    """The patient's age at the film in years, from the header.

    PatientAge (an Age String, PS3.5 6.2: ``nnnD``, ``nnnW``, ``nnnM`` or ``nnnY``) when present, else
    PatientBirthDate and the first of StudyDate, AcquisitionDate, ContentDate.

    Returns:
        The age, or ``None`` when the header does not say.

    Raises:
        ValueError: a present value that is not a valid age or date (the message holds no value: PHI).
    """
    age = header_text(ds, "PatientAge").upper()
    if age:
        if len(age) != 4 or not age[:3].isdigit() or age[3] not in _AGE_UNITS:
            raise ValueError("PatientAge is not an Age String")
        return int(age[:3]) * _AGE_UNITS[age[3]]
    birth = header_text(ds, "PatientBirthDate")
    film = next((header_text(ds, k) for k in ("StudyDate", "AcquisitionDate", "ContentDate") if header_text(ds, k)), "")
    if not birth or not film:
        return None
    try:
        born, taken = DA(birth), DA(film)
    except (TypeError, ValueError):
        raise ValueError("PatientBirthDate or the film's date is not a Date") from None
    if born is None or taken is None:
        raise ValueError("PatientBirthDate or the film's date is not a Date")
    return (taken - born).days / 365.25


# -- output metadata schema ------------------------------------------------------------------------------

#: DICOM attributes copied into the metadata under their keyword (``""`` when absent or not DICOM).
DICOM_META_KEYWORDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "Modality",
    "ViewPosition",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "Manufacturer",
    "ManufacturerModelName",
)


def make_meta(
    path: str | os.PathLike | None,
    fmt: str,
    rows: int,
    columns: int,
    *,
    spacing_rc: tuple[float, float] | None = None,
    spacing_source: str = "",
    flags: list[str] | None = None,
    intensity_rule: str = "",
    bits: int = 0,
    dicom: dict[str, str] | None = None,
    affine=None,
) -> dict:
    """Build the metadata every reader returns, with the same keys for every format so batches collate.

    Args:
        path: the source file.
        fmt: one of :data:`~monai_pneumonia.io.formats.RADIOGRAPH_FORMATS`.
        rows: image height in the source (after EXIF orientation for Pillow images).
        columns: image width in the source.
        spacing_rc: (row spacing, column spacing) in mm as DICOM orders PixelSpacing, or ``None`` if unknown.
        spacing_source: the attribute the spacing came from.
        flags: policy flags.
        intensity_rule: how values were mapped to [0, 1].
        bits: bit depth of the stored values.
        dicom: DICOM attributes (keys of :data:`DICOM_META_KEYWORDS` plus ``TransferSyntaxUID``).
        affine: a 4x4 affine to use instead of the one made from the spacing (NIfTI).

    Returns:
        The metadata dictionary (see :mod:`monai_pneumonia.transforms.io` for the keys).
    """
    known = spacing_rc is not None
    sy, sx = (float(spacing_rc[0]), float(spacing_rc[1])) if known else (1.0, 1.0)
    if affine is None:
        affine = np.diag([sx, sy, 1.0, 1.0])
    meta = {
        "filename_or_obj": os.fspath(path) if path is not None else "",
        "format": fmt,
        "spatial_shape": np.array([int(columns), int(rows)]),  # x (column) first, as MONAI readers
        "original_rows": int(rows),
        "original_columns": int(columns),
        "original_channel_dim": float("nan"),  # MONAI's "no channel" marker
        "spacing": np.array([sx, sy]),
        "spacing_known": known,
        "spacing_source": spacing_source if known else "",
        "affine": np.asarray(affine, dtype=np.float64),
        "original_affine": np.asarray(affine, dtype=np.float64).copy(),
        FLAGS_KEY: join_flags(flags or []),
        "intensity_rule": intensity_rule,
        "bits_stored": int(bits),
        "TransferSyntaxUID": "",
    }
    for keyword in DICOM_META_KEYWORDS:
        meta[keyword] = ""
    meta.update({k: str(v) for k, v in (dicom or {}).items()})
    return meta
