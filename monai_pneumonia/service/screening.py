"""Which received instances are classified: the service's acceptance policy, applied to the header.

The loader's :class:`~monai_pneumonia.io.policy.XrayPolicy` decides, before any pixel is decoded:

* hard rules (always refused): Modality outside CR/DX/RG (a Secondary Capture with ``OT`` or no Modality is
  accepted), more than one frame, a photometric interpretation other than MONOCHROME1/2;
* soft rules, refused by default in the service (``lenient=True``: only flagged, as the loader does): a
  ViewPosition other than PA/AP (lateral views), a BodyPartExamined other than CHEST, FOR PROCESSING images.

An instance that passes is classified; one the decoder then cannot read is refused by the loader. Refusals are
logged with their reason and journaled, never classified or reported. SOP Classes other than CR, DX (for
presentation) and single-frame Secondary Capture are refused earlier, at association negotiation.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.policy import XrayPolicy

__all__ = ["screen"]

_HARD = XrayPolicy()
_STRICT = XrayPolicy(strict=True)


def screen(header: Dataset, lenient: bool = False) -> str | None:
    """Apply the acceptance policy to an instance header.

    Args:
        header: the data set (pixel data not needed).
        lenient: flag rather than refuse lateral views, other body parts and FOR PROCESSING images.

    Returns:
        ``None`` when the instance is to be classified, else the reason it is refused.
    """
    soft = _HARD if lenient else _STRICT
    try:
        _HARD.check_modality(None, str(header.get("Modality", "") or ""))
        _HARD.check_frames(None, int(header.get("NumberOfFrames", 1) or 1))
        _HARD.check_photometric(None, str(header.get("PhotometricInterpretation", "")),
                                int(header.get("SamplesPerPixel", 1) or 1))
        soft.check_anatomy(None, str(header.get("BodyPartExamined", "") or ""), str(header.get("ViewPosition", "") or ""))
        soft.check_for_processing(None, str(header.get("PresentationIntentType", "") or ""))
    except XrayInputError as refusal:
        return refusal.reason
    except (TypeError, ValueError) as error:
        return f"invalid header ({type(error).__name__})"  # the text may quote attribute values (PHI)
    return None
