"""Tests of the HTML evaluation report: content, inline images, escaping, and a headless-Chromium rendering."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from monai_pneumonia.evaluation import binary_metrics, write_report
from monai_pneumonia.evaluation.report import CONFUSION_CMAP, ROC_COLOR
from monai_pneumonia.visualize import overlay_cam, save_png

CHROMIUM = Path("/usr/bin/chromium")
INJECTED = '<img src=x onerror="alert(1)">'
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
PLOT_URI = re.compile(r'<img class="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
THRESHOLD = 0.5


def _records(folder: Path, n_pos: int = 38, n_neg: int = 22) -> list[dict]:
    """Synthetic predictions; every third film and every error gets a small 48 x 40 CAM overlay."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    probs = np.clip(np.where(labels == 1, rng.normal(0.72, 0.2, labels.size), rng.normal(0.35, 0.2, labels.size)),
                    0.001, 0.999)
    xs, ys = np.mgrid[0:48, 0:40]  # (W, H) as MONAI loads pictures
    image = 0.25 + 0.5 * np.exp(-((xs - 24) ** 2 + (ys - 20) ** 2) / 300.0)
    records = []
    for i, (label, prob) in enumerate(zip(labels, probs, strict=True)):
        name = f"person{i}_{INJECTED}.jpeg" if i == 0 else f"person{i}_bacteria.jpeg"
        record = {"image": f"/data/test/{name}", "label": int(label), "prob_pneumonia": float(prob),
                  "prediction": int(prob >= THRESHOLD)}
        if i % 3 == 0 or record["prediction"] != label:
            overlay = overlay_cam(image, np.exp(-((xs - 8 - i % 32) ** 2 + (ys - 14) ** 2) / 60.0))
            record["cam_png"] = save_png(overlay, folder / f"cam{i}.png") if i % 2 else overlay
        records.append(record)
    return records


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    records = _records(folder)
    labels = [r["label"] for r in records]
    probs = [r["prob_pneumonia"] for r in records]
    metrics = binary_metrics(labels, probs, THRESHOLD, n_bootstrap=300)
    path = write_report(records, metrics, folder / "out" / "report.html",
                        model_info={"model": "AttentionResNet-50", "checkpoint": "model.pt"})
    return path, records, metrics


def test_report_has_the_sections_in_order(report):
    path, _, metrics = report
    text = path.read_text(encoding="utf-8")
    sections = ["AttentionResNet-50", "Metrics at the operating threshold", "<th>95% CI</th>", "ROC curve", "Confusion matrix",
                "Reliability diagram", "Probability histogram", "Grad-CAM gallery", "Missed pneumonia",
                "False alarms", "Correct: pneumonia", "Correct: normal"]
    positions = [text.find(section) for section in sections]
    assert -1 not in positions, dict(zip(sections, positions, strict=True))
    assert positions == sorted(positions)
    assert f"{metrics['tp']} / {metrics['n_positive']}" in text  # sensitivity support
    assert "60 films: 38 pneumonia, 22 normal" in text


def test_inline_images_are_pngs_and_nothing_is_external(report):
    path, records, _ = report
    text = path.read_text(encoding="utf-8")
    payloads = DATA_URI.findall(text)
    assert len(PLOT_URI.findall(text)) == 4
    with_cam = sum(r.get("cam_png") is not None for r in records)
    assert 4 + 6 <= len(payloads) <= 4 + with_cam
    for payload in payloads:
        picture = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert picture.format == "PNG"
        picture.verify()
    assert re.findall(r'(?:src|href)="(?!data:image/png;base64,)', text) == []
    assert "<script" not in text.lower() and "http://" not in text and "https://" not in text


def test_file_names_are_escaped(report):
    text = report[0].read_text(encoding="utf-8")
    assert INJECTED not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


def test_false_negatives_come_first_and_worst_first(report):
    path, records, _ = report
    text = path.read_text(encoding="utf-8")
    missed = sorted((r for r in records if r["label"] == 1 and r["prediction"] == 0), key=lambda r: r["prob_pneumonia"])
    assert missed, "the synthetic data should contain false negatives"
    gallery = text[text.find("Missed pneumonia"):text.find("False alarms")]
    order = [gallery.find(f"P(pneumonia) = {r['prob_pneumonia']:.3f}") for r in missed]
    assert -1 not in order and order == sorted(order)


def test_single_class_report(tmp_path):
    records = [{"image": f"p{i}.png", "label": 1, "prob_pneumonia": p, "prediction": int(p >= 0.5)}
               for i, p in enumerate((0.2, 0.7, 0.9))]
    metrics = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5, n_bootstrap=20)
    text = write_report(records, metrics, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "ROC curve" in text and "AUC is undefined" in text and "undefined" in text
    with pytest.raises(ValueError):
        write_report([], metrics, tmp_path / "empty.html")


def _screenshot(html: Path, png: Path) -> np.ndarray:
    with tempfile.TemporaryDirectory() as profile:
        command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1280,2400",
                   f"--screenshot={png}", html.resolve().as_uri()]
        subprocess.run(command, check=True, timeout=90, capture_output=True)
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int16)


def _blank_plots(html: str) -> str:
    """The same page with every plot replaced by a white PNG of the same pixel size (identical layout)."""
    def white(match: re.Match) -> str:
        size = Image.open(io.BytesIO(base64.b64decode(match.group(1)))).size
        buffer = io.BytesIO()
        Image.new("RGB", size, "white").save(buffer, format="PNG")
        return f'<img class="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"'

    return PLOT_URI.sub(white, html)


def _near(pixels: np.ndarray, colour, tolerance: int) -> int:
    rgb = np.array(matplotlib.colors.to_rgb(colour)) * 255
    return int((np.abs(pixels - rgb).max(axis=-1) <= tolerance).sum())


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                    "(scripts/install-system-deps.sh installs it)")
def test_chromium_renders_the_plots(report):
    path, _, metrics = report
    blank_html = path.with_name("report_blank_plots.html")
    blank_html.write_text(_blank_plots(path.read_text(encoding="utf-8")), encoding="utf-8")
    shot = _screenshot(path, path.with_name("screenshot.png"))
    blank = _screenshot(blank_html, path.with_name("screenshot_blank_plots.png"))
    assert shot.shape == blank.shape == (2400, 1280, 3)
    # the ROC curve's colour comes only from the plot images
    assert _near(shot, ROC_COLOR, 30) - _near(blank, ROC_COLOR, 30) > 300
    # each confusion-matrix cell is a large patch of its Blues shade (row share of the actual class)
    counts = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    for share in shares.ravel():
        shade = matplotlib.colormaps[CONFUSION_CMAP](share)
        assert _near(shot, shade, 4) - _near(blank, shade, 4) > 4000, share
    # and the plots change a substantial part of the page
    assert (np.abs(shot - blank).max(axis=-1) > 40).mean() > 0.03



def test_report_carries_the_disclaimer_and_warns_when_a_class_has_too_few_films(report, tmp_path):
    from monai_pneumonia.evaluation.report import MIN_FILMS_PER_CLASS
    from monai_pneumonia.results import DISCLAIMER

    path, _, _ = report
    text = path.read_text(encoding="utf-8")
    assert text.count("Not a medical device") == 2  # header and footer
    assert "Too few films for the intervals to mean anything: 38 pneumonia and 22 normal" in text
    records = _records(tmp_path, n_pos=MIN_FILMS_PER_CLASS, n_neg=MIN_FILMS_PER_CLASS)
    metrics = binary_metrics([r["label"] for r in records], [r["prob_pneumonia"] for r in records], THRESHOLD,
                             n_bootstrap=50)
    enough = write_report(records, metrics, tmp_path / "enough.html").read_text(encoding="utf-8")
    assert "Too few films" not in enough and DISCLAIMER.split(".")[0] in enough


def _luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of ``#rgb`` or ``#rrggbb``."""
    digits = hex_colour.lstrip("#")
    digits = "".join(c * 2 for c in digits) if len(digits) == 3 else digits
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_the_disclaimer_is_readable_and_states_the_intended_use():
    """The disclaimer box sits in the header (white text): its own text colour must contrast with its background
    (WCAG AA, 4.5:1)."""
    from monai_pneumonia.evaluation.report import _CSS
    from monai_pneumonia.results import DISCLAIMER

    rule = re.search(r"\.warn\{([^}]*)\}", _CSS).group(1)
    header = re.search(r"(?m)^header\{([^}]*)\}", _CSS).group(1)
    background = re.search(r"background:(#[0-9a-fA-F]{3,6})", rule).group(1)
    text = (re.search(r"(?:^|;)color:(#[0-9a-fA-F]{3,6})", rule) or re.search(r"(?:^|;)color:(#[0-9a-fA-F]{3,6})",
                                                                                  header)).group(1)
    light, dark = sorted((_luminance(background), _luminance(text)), reverse=True)
    assert (light + 0.05) / (dark + 0.05) >= 4.5, (background, text)
    assert "research use only; not for diagnosis or triage" in DISCLAIMER.lower()


def test_flags_are_counted_named_on_their_cards_and_left_out_of_a_second_set_of_metrics(tmp_path):
    records = _records(tmp_path)
    error = next(i for i, r in enumerate(records) if r["prediction"] != r["label"])  # errors are always in the gallery
    flagged = sorted({error, 1, 2, 5})
    for index in flagged:
        records[index]["flags"] = "atypical"
    records[flagged[-1]]["flags"] = "age_outside_intended_use;atypical"
    labels = np.array([r["label"] for r in records])
    probs = np.array([r["prob_pneumonia"] for r in records])
    metrics = binary_metrics(labels, probs, THRESHOLD, n_bootstrap=0)
    text = write_report(records, metrics, tmp_path / "flagged.html").read_text(encoding="utf-8")
    section = text[text.index("Intended-use flags"):text.index("Grad-CAM gallery")]
    n = len(flagged)
    assert f'<td>atypical</td><td class="num">{n} of 60</td>' in section
    assert '<td>age_outside_intended_use</td><td class="num">1 of 60</td>' in section
    clean = np.ones(60, bool)
    clean[flagged] = False
    rest = binary_metrics(labels[clean], probs[clean], THRESHOLD, n_bootstrap=0)
    assert f"Without the {n} flagged films ({60 - n} left): sensitivity {100 * rest['sensitivity']:.1f}%" in section
    gallery = text[text.index("Grad-CAM gallery"):]
    card = gallery[gallery.index(Path(records[error]["image"]).name):]
    assert card[:card.index("</figure>")].count("flags: ") == 1
    unflagged = write_report(_records(tmp_path), metrics, tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "No film was flagged" in unflagged and "flags: " not in unflagged
