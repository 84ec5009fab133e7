"""Results as DICOM: a TID 1500 Measurement Report in a Comprehensive SR, and a Grad-CAM Secondary Capture.

The SR (PS3.3 A.35.3, Comprehensive SR IOD) holds one TID 1500 "Imaging Measurement Report" (PS3.16) with
procedure reported "Plain chest X-ray" (SCT 399208008) and one TID 1501 "Measurements and Qualitative Evaluations"
group: finding type Pneumonia (SCT 233604007), finding site Lung, the qualitative evaluation Pneumonia =
Present/Absent (DCM 121053/121054) at the model's operating threshold, the measurements Probability
(DCM 122157) and Threshold Value (DCM 122411) in UCUM ``1`` (no units), the algorithm identification (TID 4019)
and a "Source image for measurement group" reference to the input. It lives in the study of the input, in a
series of its own; its UIDs are derived from the input's UIDs (:func:`~monai_pneumonia.service.uids.derive_uid`),
so processing an input twice produces the same instance, which a PACS stores once.

The input is not passed as ``referenced_images`` of the report: highdicom requires ImagerPixelSpacing or
PixelSpacing there, which many CR/DX images lack; the group's source-image reference is the reference.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from io import BytesIO

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DA, DT, TM

from monai_pneumonia import __version__
from monai_pneumonia.decision import is_positive
from monai_pneumonia.service.uids import derive_uid

__all__ = [
    "INTENDED_USE_QUALIFIERS",
    "PLAIN_CHEST_XRAY",
    "PNEUMONIA",
    "AlgorithmInfo",
    "PneumoniaFinding",
    "build_cam_secondary_capture",
    "build_pneumonia_sr",
    "encode",
    "header_fallbacks",
    "render_results",
    "result_uids",
]

#: SNOMED CT 233604007 |Pneumonia (disorder)|.
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
#: SNOMED CT 399208008 |Plain chest X-ray (procedure)|.
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
#: Intended-use gate flags reported as qualitative evaluations (value SCT "Yes"): local codes (coding scheme
#: designator ``99MPNEU``, private per PS3.16 section 8), as no standard concept says "input unlike the model's".
#: Keyed by the flags ``io.policy.ATYPICAL_FLAG`` and ``AGE_FLAG``, spelled out: importing ``io`` loads torch,
#: which this module avoids (a test checks the spellings agree).
INTENDED_USE_QUALIFIERS = {
    "atypical": Code("ATYPICAL", "99MPNEU", "Image atypical for the algorithm (result less reliable)"),
    "age_outside_intended_use": Code("AGEOUT", "99MPNEU", "Patient age outside the algorithm's intended use"),
}
#: Series numbers of the result series (high, to sort after the acquisition's series in a viewer).
SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9801, 9802
MANUFACTURER = "monai-pneumonia"


@dataclass(frozen=True)
class AlgorithmInfo:
    """Algorithm Identification (TID 4019).

    Attributes:
        name: the algorithm name shown in the report.
        version: its version: the model file's SHA-256 once :meth:`identified` (64 hex digits fit the LO value).
        parameters: the decision's parameters beside the threshold (the site profile's SHA-256 and rule).
    """

    name: str = "monai-pneumonia attention-ResNet"
    version: str = __version__
    parameters: tuple[str, ...] = ()

    def identified(self, identity: dict[str, str]) -> AlgorithmInfo:
        """This algorithm named by its model: version = the model's SHA-256, the site profile as parameters.

        Args:
            identity: :func:`~monai_pneumonia.networks.model_identity` of the classifier (``{}``: unchanged).
        """
        if not identity.get("model_sha256"):
            return self
        parameters = [f"package_version={__version__}"]
        if identity.get("site_profile_sha256"):
            parameters += [f"site_profile_sha256={identity['site_profile_sha256']}",
                           f"site_rule={identity.get('site_rule', '')}"]
        return replace(self, version=identity["model_sha256"], parameters=tuple(parameters))


@dataclass(frozen=True)
class PneumoniaFinding:
    """The model's answer for one image, as reported.

    Attributes:
        probability: probability of pneumonia in [0, 1].
        threshold: the operating threshold; pneumonia is present when ``probability >= threshold``.
        flags: the film's policy flags; those of :data:`INTENDED_USE_QUALIFIERS` become qualitative evaluations
            of the SR, so the radiologist sees them beside the finding.
    """

    probability: float
    threshold: float
    flags: tuple[str, ...] = ()

    @property
    def present(self) -> bool:
        """True when pneumonia is reported present."""
        return bool(is_positive(self.probability, self.threshold))


#: Type 2 Patient and General Study attributes (PS3.3 C.7.1.1, C.7.2.1) the result copies from the source;
#: absent ones are copied empty, as type 2 allows.
_COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber")


#: Patient's Sex values of PS3.3 C.7.1.1 (``U`` and the like are common out of specification).
_PATIENT_SEX = ("M", "F", "O")


def _conformant(element) -> bool:
    """Whether a date, time or date-time element holds a value its VR allows (highdicom refuses others)."""
    convert = {"DA": DA, "TM": TM, "DT": DT}.get(element.VR)
    if convert is None or element.value in (None, ""):
        return True
    try:
        for value in (element.value if element.VM > 1 else [element.value]):
            convert(value)
    except (TypeError, ValueError):
        return False
    return True


#: Specific Character Set terms highdicom writes (PS3.3 C.12.1.1.2); ``""`` is the default repertoire.
_CHARACTER_SETS = frozenset(member.value for member in hd.SpecificCharacterSetValues) | {""}
#: What a result is written in when the source's character set is unknown: pydicom decoded the source's values
#: with its default (and warned), and UTF-8 encodes whatever it decoded.
_FALLBACK_CHARACTER_SET = "ISO_IR 192"


def _instance_number(source: Dataset) -> int | None:
    """The source's Instance Number as an integer, ``None`` when absent or not an IS value (``abc``)."""
    try:
        return int(source.get("InstanceNumber", None) or 0) or None
    except (TypeError, ValueError):
        return None


def _unknown_character_set(source: Dataset) -> bool:
    value = source.get("SpecificCharacterSet", None) or ""
    terms = [value] if isinstance(value, str) else list(value)
    return any(str(term).strip() not in _CHARACTER_SETS for term in terms)


def header_fallbacks(source: Dataset) -> list[str]:
    """Flags naming the out-of-specification header values a result of ``source`` replaces by a fallback.

    ``instance_number:invalid`` (Instance Number not an integer: the result's is 1) and
    ``character_set:unknown`` (a Specific Character Set term PS3.3 C.12.1.1.2 does not define: the result is
    written in UTF-8, ``ISO_IR 192``). A film is never refused for either: neither affects the lungs.
    """
    flags = []
    if "InstanceNumber" in source and source.InstanceNumber not in (None, "") and _instance_number(source) is None:
        flags.append("instance_number:invalid")
    if _unknown_character_set(source):
        flags.append("character_set:unknown")
    return flags


def _reference_header(source: Dataset) -> Dataset:
    """A copy of the source header without pixel data, with absent type 2 attributes present and empty.

    Out-of-specification values highdicom would refuse (Patient's Sex ``U``, a birth date ``01/02/1970``, any
    non-conformant DA/TM/DT) are emptied, as type 2 allows: a result about the lungs does not depend on them, and
    the film is not refused for them; an unknown character set becomes UTF-8 and an Instance Number that is not
    an integer is dropped (:func:`header_fallbacks` names both).
    """
    header = Dataset()
    # copies: setting a value below must not change the caller's header (the worker reads its flags afterwards)
    header.update({tag: copy.copy(element) for tag, element in source.items() if tag < 0x7FE00000})
    for keyword in _COPIED_TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    sex = str(header.PatientSex or "").strip().upper()
    header.PatientSex = sex if sex in _PATIENT_SEX else None
    for element in list(header):
        if not _conformant(element):
            header[element.tag].value = None
    if _unknown_character_set(header):
        header.SpecificCharacterSet = _FALLBACK_CHARACTER_SET
    if _instance_number(header) is None:
        header.pop("InstanceNumber", None)
    return header


def result_uids(source: Dataset, kind: str) -> tuple[str, str]:
    """``(SeriesInstanceUID, SOPInstanceUID)`` of the ``kind`` (``"sr"`` or ``"sc"``) result of ``source``.

    One result series per study and kind; one result instance per source instance.
    """
    return (derive_uid(kind, "series", str(source.StudyInstanceUID)),
            derive_uid(kind, "instance", str(source.SOPInstanceUID)))


def _unit_measurement(name: Code, value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=round(float(value), 6), unit=codes.UCUM.NoUnits)


def build_pneumonia_sr(source: Dataset, finding: PneumoniaFinding,
                       algorithm: AlgorithmInfo = AlgorithmInfo()) -> hd.sr.ComprehensiveSR:
    """Build the Comprehensive SR reporting ``finding`` for ``source``.

    Args:
        source: the input instance (its header is enough: patient, study and SOP attributes).
        finding: probability and threshold.
        algorithm: what produced the finding.

    Returns:
        The SR, in the study of ``source``, with deterministic series and instance UIDs.
    """
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version,
        parameters=[f"operating_threshold={finding.threshold:.6f}", *algorithm.parameters])
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derive_uid("tracking", str(source.SOPInstanceUID)), identifier="Pneumonia classification"),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)],
        measurements=[_unit_measurement(codes.DCM.Probability, finding.probability),
                      _unit_measurement(codes.DCM.ThresholdValue, finding.threshold)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=PNEUMONIA, value=codes.DCM.Present if finding.present else codes.DCM.Absent)] + [
            hd.sr.QualitativeEvaluation(name=INTENDED_USE_QUALIFIERS[flag], value=codes.SCT.Yes)
            for flag in INTENDED_USE_QUALIFIERS if flag in finding.flags],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derive_uid("device", algorithm.name), name=algorithm.name, manufacturer_name=MANUFACTURER,
            model_name=algorithm.name))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PLAIN_CHEST_XRAY,
        imaging_measurements=[group],
    )
    series_uid, sop_uid = result_uids(source, "sr")
    source = _reference_header(source)
    return hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=series_uid, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid, instance_number=_instance_number(source) or 1,
        manufacturer=MANUFACTURER, is_complete=True, series_description="AI pneumonia classification (research)")


def _series_laterality(source: Dataset) -> str | None:
    """Laterality (0020,0060) of the SC's General Series (PS3.3 C.7.3.1, Type 2C): the source's L or R, else empty.

    Its condition (a paired body part, and no Image Laterality) cannot be evaluated from the SC alone, which has
    no Image Laterality (the SC Image IOD has no module holding it): validators (dciodvfy) then require the
    attribute, and Type 2 allows it empty when unknown. A chest is not a paired structure; a chest film's Image
    Laterality is ``U``, which Laterality's enumerated values (L, R) do not include.
    """
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(source.get(keyword, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return None


def build_cam_secondary_capture(source: Dataset, overlay_rgb: np.ndarray, burned_in_text: bool = True) -> hd.sc.SCImage:
    """Build a Secondary Capture Image (PS3.3 A.8.1) showing a Grad-CAM overlay of ``source``.

    Args:
        source: the input instance header.
        overlay_rgb: ``uint8`` RGB picture ``(rows, columns, 3)``
            (:func:`~monai_pneumonia.visualize.render_cam`).
        burned_in_text: whether text is burned into the pixels (the renderer's caption; it names no patient, but
            receivers that screen burned-in text should look): sets Burned In Annotation (0028,0301) to ``YES``,
            else ``NO``.

    Returns:
        The SC image in the study of ``source``, referencing it in SourceImageSequence.
    """
    series_uid, sop_uid = result_uids(source, "sc")
    source = _reference_header(source)
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=np.ascontiguousarray(overlay_rgb, dtype=np.uint8),
        photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=series_uid, series_number=SC_SERIES_NUMBER, sop_instance_uid=sop_uid,
        instance_number=_instance_number(source) or 1, manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"), transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description="AI pneumonia Grad-CAM (research)")
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    image.SourceImageSequence = [reference]
    image.BurnedInAnnotation = "YES" if burned_in_text else "NO"
    image.Laterality = _series_laterality(source)
    return image


def encode(dataset: Dataset) -> bytes:
    """A data set as a PS3.10 file in memory."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def render_results(job: tuple[Dataset, PneumoniaFinding, AlgorithmInfo, np.ndarray | None]) -> list[tuple[str, bytes]]:
    """Build and encode the result instances of one source: the SR, and the Grad-CAM SC when an overlay is given.

    A module-level function, so that it can run in a worker process (building an SR with highdicom is pure
    Python and costs tens of milliseconds; a process of its own keeps it off the receiving process's GIL). This
    module imports neither torch nor MONAI, so such a process starts quickly.

    Returns:
        ``(SOP Instance UID, PS3.10 file bytes)`` per result instance.
    """
    header, finding, algorithm, overlay = job
    results = [build_pneumonia_sr(header, finding, algorithm)]
    if overlay is not None:
        results.append(build_cam_secondary_capture(header, overlay))
    return [(str(dataset.SOPInstanceUID), encode(dataset)) for dataset in results]
