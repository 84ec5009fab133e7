"""Which received instances are classified: the service's acceptance policy, applied to the header.

The loader's rules (:meth:`XrayPolicy.check_header <monai_pneumonia.io.policy.XrayPolicy.check_header>`, in the
loader's order) decide, before any pixel is decoded:

* hard rules (always refused): Modality outside CR/DX/RG (a Secondary Capture with ``OT`` or no Modality is
  accepted), a photometric interpretation other than MONOCHROME1/2, more than one frame, an image larger than the
  loader's limit or without rows or columns, no BitsAllocated/BitsStored;
* soft rules, refused by default in the service (``lenient=True``: only flagged, as the loader does): a
  ViewPosition other than PA/AP (lateral views), a BodyPartExamined other than CHEST, FOR PROCESSING images;
* the age rule: a header age outside the intended population (children) is classified and flagged
  ``age_outside_intended_use``, as in the loader (refused with ``XrayPolicy(refuse_age=True)``); the intended-use
  gate's atypicality tier then applies to the pixels (:mod:`monai_pneumonia.networks.atypicality`).

An instance that passes is classified; one the decoder then cannot read (or without Pixel Data, which the header
read here stops before) is refused by the loader. Refusals are logged with their reason and journaled, never
classified or reported. SOP Classes other than CR, DX (for presentation) and single-frame Secondary Capture are
refused earlier, at association negotiation.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.policy import XrayPolicy

__all__ = ["SERVICE_POLICY", "screen"]

#: The service's policy: lateral views, other body parts and FOR PROCESSING images refused, secondary captures
#: classified (and flagged).
SERVICE_POLICY = XrayPolicy(strict=True, allow_secondary_capture=True)
_LENIENT = XrayPolicy()


def screen(header: Dataset, lenient: bool = False) -> str | None:
    """Apply the acceptance policy to an instance header.

    Args:
        header: the data set (pixel data not needed).
        lenient: flag rather than refuse lateral views, other body parts and FOR PROCESSING images.

    Returns:
        ``None`` when the instance is to be classified, else the reason it is refused.
    """
    try:
        (_LENIENT if lenient else SERVICE_POLICY).check_header(None, header, pixel_data=False)
    except XrayInputError as refusal:
        return refusal.reason
    except (TypeError, ValueError) as error:
        return f"invalid header ({type(error).__name__})"  # the text may quote attribute values (PHI)
    return None
