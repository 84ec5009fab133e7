"""The one Grad-CAM renderer: display image at its aspect ratio, colour scale, caption; one picture everywhere."""

from __future__ import annotations

import matplotlib
import numpy as np
import pydicom
from PIL import Image

from monai_pneumonia.inference import BundleClassifier, Classification
from monai_pneumonia.service.reports import build_cam_secondary_capture
from monai_pneumonia.visualize import cam_at_size, caption, evidence_map, overlay_name, render_cam
from tests.conftest import CONFIGS, REPO, TINY, run_bundle
from tests.factories import gradient_picture, write_dicom


def test_render_keeps_the_aspect_ratio_and_scales_to_a_useful_size():
    display = np.random.default_rng(0).random((1, 150, 300))  # MONAI (1, W, H): 300 rows, 150 columns
    cam = np.zeros((1, 7, 7))
    picture = render_cam(display, cam)
    rows = picture.shape[0]
    assert rows == 512 and picture.dtype == np.uint8 and picture.shape[2] == 3
    image_part = picture[:, :256]
    assert image_part.shape == (512, 256, 3)  # 2:1 kept (the colour scale sits to the right)
    big = render_cam(np.zeros((1, 3000, 1500)), cam)
    assert big.shape[0] == 1024 // 2 and max(big.shape[:2]) <= 1024 + 200


def test_colour_scale_runs_from_the_map_top_colour_to_its_bottom_colour():
    picture = render_cam(np.zeros((1, 200, 200)), np.zeros((1, 7, 7)), alpha=1.0)
    rows, columns = 512, 512
    strip = picture[:rows, columns:]
    bar_columns = [c for c in range(strip.shape[1]) if strip[rows // 2, c].tolist() != [16, 16, 16]]
    assert bar_columns, "a colour scale beside the picture"
    top, bottom = strip[2, bar_columns[0]], strip[rows - 3, bar_columns[0]]
    assert top[0] > top[2] and bottom[2] > bottom[0]  # jet: red at 1 (top), blue at 0 (bottom)
    assert (picture[:rows, :columns] == picture[0, 0]).all()  # a zero map under alpha 1 is one colour


def test_caption_states_probability_threshold_and_decision():
    assert caption(0.8, 0.4) == "P(pneumonia) 0.800 >= threshold 0.400: PNEUMONIA (research use)"
    assert "< threshold 0.400: NORMAL" in caption(0.39, 0.4)
    plain = render_cam(np.zeros((1, 64, 64)), np.zeros((1, 7, 7)))
    captioned = render_cam(np.zeros((1, 64, 64)), np.zeros((1, 7, 7)), 0.8, 0.4)
    assert captioned.shape[0] > plain.shape[0]
    np.testing.assert_array_equal(captioned[: plain.shape[0], :512], plain[:, :512])  # the bar's labels differ
    assert (captioned[plain.shape[0]:] != 16).any(), "the caption is drawn"


def test_cam_is_stretched_onto_the_film_like_the_preprocessing_stretched_the_film():
    cam = np.zeros((1, 4, 4))
    cam[0, 3, 0] = 1.0  # x = 3 (right), y = 0 (top)
    heat = cam_at_size(cam, 30, 60)
    assert heat.shape == (30, 60)
    assert np.unravel_index(heat.argmax(), heat.shape)[1] > 40 and np.unravel_index(heat.argmax(), heat.shape)[0] < 10


def test_burned_in_annotation_follows_the_caption(tmp_path):
    source = pydicom.dcmread(write_dicom(tmp_path / "cr.dcm", gradient_picture(), modality="CR"),
                             stop_before_pixels=True)
    overlay = np.zeros((40, 30, 3), np.uint8)
    assert build_cam_secondary_capture(source, overlay).BurnedInAnnotation == "YES"
    assert build_cam_secondary_capture(source, overlay, burned_in_text=False).BurnedInAnnotation == "NO"


def test_the_service_secondary_capture_and_the_bundle_overlay_are_one_picture(trained_bundle, tmp_path):
    """Same film, same model: the SC the listener sends to PACS holds exactly the bundle's CamWriter PNG."""
    (tmp_path / "films").mkdir()
    film = write_dicom(tmp_path / "films" / "chest.dcm", gradient_picture(rows=96, columns=80), modality="DX")
    run_bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--dataset_dir", str(film.parent),
               "--ckpt_dir", str(trained_bundle["ckpt_dir"]), "--output_dir", str(tmp_path / "out"),
               "--save_cam", "true", "--device", "$torch.device('cpu')", *TINY)
    bundle_png = np.asarray(Image.open(tmp_path / "out" / "cam" / overlay_name(str(film))).convert("RGB"))

    classifier = BundleClassifier.from_bundle(REPO / "bundle", ckpt_path=trained_bundle["ckpt_dir"] / "model.pt",
                                              device="cpu", **{"network_def#depth": 18, "image_size": 32})
    result = classifier(film)
    assert isinstance(result, Classification)
    header = pydicom.dcmread(film, stop_before_pixels=True)
    sc = build_cam_secondary_capture(header, classifier.cam_overlay(film, result))
    assert bundle_png.shape[0] > 512 and bundle_png.shape[1] > 512 * 80 // 96  # film scaled up, then a caption
    np.testing.assert_array_equal(sc.pixel_array, bundle_png)
    assert sc.BurnedInAnnotation == "YES"


def test_the_maps_scale_carries_the_evidence_the_same_on_every_film():
    """Grad-CAM maps are normalised per image; drawn with a probability, a normal film's blob (p = 0.015) is the
    colour of no evidence, a pneumonia film's (p = 0.86) near the top of the one shared colour scale."""
    cam = np.zeros((1, 8, 8))
    cam[0, 1:3, 1:3] = 1.0  # a full-strength blob, as per-image normalisation makes of any map
    display = np.full((1, 64, 64), 0.5)
    weak, strong = (render_cam(display, cam, p, 0.5, alpha=1.0) for p in (0.015, 0.86))
    blob, empty = (100, 100), (450, 450)
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(weak[blob] / 255.0, jet(0.015)[:3], atol=2 / 255)
    contrast = [np.abs(picture[blob].astype(int) - picture[empty]).sum() for picture in (weak, strong)]
    assert contrast[0] < 0.1 * contrast[1], contrast  # no full-strength blob where there is little evidence
    np.testing.assert_allclose(strong[blob] / 255.0, jet(0.86)[:3], atol=2 / 255)
    np.testing.assert_array_equal(weak[:512, 512:], strong[:512, 512:])  # one colour scale on both
    np.testing.assert_allclose(evidence_map(np.ones(3), float("nan")), 0.0)
