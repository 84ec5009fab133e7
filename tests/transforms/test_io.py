"""LoadXray / LoadXrayd: MONAI integration, orientation, metadata, reader equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose, LoadImage, Resized

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io import XrayDicomReader
from monai_pneumonia.transforms import LoadXray, LoadXrayd
from tests.factories import gradient_picture, write_dicom, write_nifti, write_png

PIC = gradient_picture(30, 20, seed=11)  # 30 rows x 20 columns
META_KEYS = {
    "filename_or_obj",
    "format",
    "spatial_shape",
    "original_rows",
    "original_columns",
    "spacing",
    "xray_flags",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "Modality",
    "ViewPosition",
    "BodyPartExamined",
    "PhotometricInterpretation",
}


@pytest.fixture()
def files(tmp_path):
    return {
        "png": write_png(tmp_path / "a.png", PIC),
        "dicom": write_dicom(
            tmp_path / "a.dcm", PIC, bits_stored=12, photometric="MONOCHROME1", window="auto", pixel_spacing=(0.2, 0.1)
        ),
        "nifti": write_nifti(tmp_path / "a.nii.gz", PIC),
    }


@pytest.mark.parametrize("fmt", ["png", "dicom", "nifti"])
def test_output_and_orientation(files, fmt):
    image = LoadXray()(files[fmt])
    assert isinstance(image, MetaTensor) and image.dtype == torch.float32
    assert image.shape == (1, 20, 30)  # (1, W, H): x = column first
    np.testing.assert_allclose(image[0].numpy(), PIC.T / 255.0, atol=0.5 / 4095 + 1e-6)
    assert META_KEYS <= set(image.meta) and image.meta["format"] == fmt
    assert image.meta["filename_or_obj"] == str(files[fmt])
    assert list(image.meta["spatial_shape"]) == [20, 30]
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_same_orientation_as_monai_pil_reader(files):
    monai_png = LoadImage(image_only=True, ensure_channel_first=True)(files["png"])
    assert monai_png.shape == LoadXray()(files["png"]).shape


def test_dicom_meta_and_affine(files):
    image = LoadXray()(files["dicom"])
    assert image.meta["Modality"] == "DX" and image.meta["PhotometricInterpretation"] == "MONOCHROME1"
    assert image.meta["ViewPosition"] == "PA" and image.meta["BodyPartExamined"] == "CHEST"
    np.testing.assert_allclose(image.meta["spacing"], [0.1, 0.2])
    np.testing.assert_allclose(image.affine.numpy(), np.diag([0.1, 0.2, 1.0, 1.0]))
    np.testing.assert_allclose(image.pixdim.numpy()[:2], [0.1, 0.2])


def test_monai_loadimage_with_reader_equals_loadxray(files):
    reader = XrayDicomReader()
    assert reader.verify_suffix(str(files["dicom"])) and not reader.verify_suffix(str(files["png"]))
    via_monai = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)(files["dicom"])
    ours = LoadXray()(files["dicom"])
    assert via_monai.shape == ours.shape
    torch.testing.assert_close(via_monai.as_tensor(), ours.as_tensor())
    assert via_monai.meta["SOPInstanceUID"] == ours.meta["SOPInstanceUID"]


def test_dict_version_in_compose_with_missing_keys(files):
    pipeline = Compose(
        [LoadXrayd(keys=["image", "mask"], allow_missing_keys=True), Resized(keys="image", spatial_size=(16, 16))]
    )
    out = pipeline({"image": str(files["dicom"]), "label": 1})
    assert out["image"].shape == (1, 16, 16) and out["label"] == 1 and "mask" not in out
    with pytest.raises(KeyError):
        LoadXrayd(keys=["image", "mask"])({"image": str(files["png"])})


def test_dict_image_only_false_adds_meta_dict(files):
    out = LoadXrayd(keys="image", image_only=False)({"image": str(files["png"])})
    assert out["image_meta_dict"]["format"] == "png"


def test_bundle_config(files):
    parser = ConfigParser(
        {"load": {"_target_": "monai_pneumonia.transforms.LoadXrayd", "keys": "image", "strict": True}}
    )
    transform = parser.get_parsed_content("load")
    assert transform({"image": str(files["png"])})["image"].shape == (1, 20, 30)


def test_mixed_formats_collate(files):
    load = LoadXrayd(keys="image")
    lateral = write_dicom(files["png"].parent / "lat.dcm", PIC, view="LL")
    batch = list_data_collate(
        [load({"image": str(files[k])}) for k in ("png", "dicom", "nifti")] + [load({"image": str(lateral)})]
    )
    assert batch["image"].shape == (4, 1, 20, 30)
    assert list(batch["image"].meta["xray_flags"]) == ["", "", "", "view:LL"]


def test_strict_refuses_lateral(tmp_path):
    path = write_dicom(tmp_path / "lat.dcm", PIC, view="LATERAL")
    assert "view:LATERAL" in LoadXray()(path).meta["xray_flags"]
    with pytest.raises(XrayInputError, match="lat.dcm"):
        LoadXray(strict=True)(path)


def test_image_only_false_returns_meta(files):
    image, meta = LoadXray(image_only=False)(files["png"])
    assert meta["format"] == "png" and image.shape == (1, 20, 30)


def test_ensure_channel_first_after_load_is_a_no_op(files):
    from monai.transforms import EnsureChannelFirstd

    out = Compose([LoadXrayd(keys="image"), EnsureChannelFirstd(keys="image")])({"image": str(files["png"])})
    assert out["image"].shape == (1, 20, 30)


def test_dtype_option(files):
    assert LoadXray(dtype="float16")(files["png"]).dtype == torch.float16
