"""The drift rule (docs/research/drift-rule.md) on synthetic records: each guard can fail."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from monai_pneumonia.monitoring import DriftRule, LiveMonitor, Reference, load_reference, monitor_records, psi
from monai_pneumonia.monitoring.drift import split_windows
from monai_pneumonia.results import film_record, refusal_record


def records(n: int, seed: int, sharpness: float = 0.02, scale: float = 1.0, confident: float = 1.0,
            manufacturer: str = "ACME", positive: float = 0.7, t0: float = 0.0) -> list[dict]:
    """Films with a positive rate, scores whose confidence grows with ``confident``, and image statistics."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = rng.random() < positive
        logit = rng.normal(3.0 * confident, 1.5) * (1 if label else -1)
        p = float(1 / (1 + np.exp(-logit)))
        meta = {"format": "dicom", "Manufacturer": manufacturer, "Modality": "DX",
                "image_statistics": {"p1": float(rng.normal(0.02, 0.01)), "p50": float(rng.normal(0.5, 0.05) * scale),
                                     "p99": float(rng.normal(0.95, 0.02)), "mean": float(rng.normal(0.48, 0.05) * scale),
                                     "sharpness": float(rng.normal(sharpness, 0.003)), "rows": int(rng.integers(900, 2000)),
                                     "columns": int(rng.integers(900, 2000))}}
        out.append(film_record(p, "PNEUMONIA" if p >= 0.5 else "NORMAL", 0.5, meta, time=t0 + i))
    return out


@pytest.fixture(scope="module")
def reference():
    return Reference.from_records(records(500, seed=0), model_sha256="a" * 64, source="synthetic validation")


def test_the_same_population_is_no_drift(reference):
    report = monitor_records(reference, records(300, seed=1))
    assert report["status"] == "no drift" and not report["drift"]
    signals = report["windows"][0]["signals"]
    assert {"probability", "sharpness", "decision", "p50"} <= set(signals)


def test_blur_is_drift_in_sharpness(reference):
    report = monitor_records(reference, records(300, seed=2, sharpness=0.01))
    assert report["drift"] and report["windows"][0]["alarms"] == ["sharpness"]


def test_a_new_manufacturer_is_drift(reference):
    report = monitor_records(reference, records(300, seed=3, manufacturer="OTHER"))
    assert report["drift"] and "Manufacturer" in report["windows"][0]["alarms"]


def test_more_confident_scores_are_not_drift_though_the_test_detects_them(reference):
    """Training films score more confidently than validation films: p ~ 0, PSI below the floor."""
    report = monitor_records(reference, records(3000, seed=4, confident=1.3), DriftRule(window=3000))
    probability = report["windows"][0]["signals"]["probability"]
    assert probability["p_adjusted"] < 1e-6 and probability["psi"] < 0.25
    assert not report["drift"]


def test_a_small_shift_at_large_n_does_not_alarm_but_a_large_one_does(reference):
    small = monitor_records(reference, records(5000, seed=5, scale=1.03), DriftRule(window=5000))
    assert small["windows"][0]["signals"]["mean"]["p_adjusted"] < 0.01 and not small["drift"]
    large = monitor_records(reference, records(300, seed=5, scale=1.3))
    assert large["drift"] and "mean" in large["windows"][0]["alarms"]


def test_too_few_films_are_insufficient_never_drift(reference):
    report = monitor_records(reference, records(99, seed=6, sharpness=0.01))
    assert report["status"] == "insufficient" and not report["drift"] and report["windows"] == []


def test_refusals_are_a_signal(reference):
    stream = records(200, seed=7) + [refusal_record("not a chest film", time=1000.0 + i) for i in range(100)]
    report = monitor_records(reference, stream)
    assert report["drift"] and report["windows"][0]["alarms"] == ["refused"]


def test_windows_split_in_time_order_and_a_short_tail_joins_the_last():
    assert split_windows(650, DriftRule()) == [(0, 300), (300, 650)]
    assert split_windows(700, DriftRule()) == [(0, 300), (300, 600), (600, 700)]
    assert split_windows(300, DriftRule()) == [(0, 300)]


def test_a_drift_only_in_the_second_window(reference):
    stream = records(300, seed=8) + records(300, seed=9, sharpness=0.01, t0=1000.0)
    report = monitor_records(reference, list(reversed(stream)))  # sorted by time first
    assert [w["drift"] for w in report["windows"]] == [False, True]


def test_psi_of_identical_counts_is_zero_and_grows_with_the_shift():
    assert psi([10, 20, 30], [10, 20, 30]) == pytest.approx(0.0)
    assert 0 < psi([10, 20, 30], [12, 20, 28]) < psi([10, 20, 30], [30, 20, 10])


def test_reference_file_round_trip_and_records_as_reference(reference, tmp_path):
    loaded = load_reference(reference.save(tmp_path / "model.reference.json"))
    assert loaded.continuous == reference.continuous and loaded.categorical == reference.categorical
    assert loaded.model_sha256 == "a" * 64
    assert json.loads((tmp_path / "model.reference.json").read_text())["summary"]["positive_rate"] == pytest.approx(
        reference.categorical["decision"]["PNEUMONIA"] / 500)
    site = tmp_path / "site.jsonl"
    site.write_text("".join(json.dumps(r) + "\n" for r in records(200, seed=10, manufacturer="OTHER")))
    assert load_reference(site).categorical["Manufacturer"] == {"OTHER": 200}


def test_live_monitor_warns_once_when_drift_starts_and_once_when_it_clears(reference, caplog):
    monitor = LiveMonitor(reference, DriftRule(window=150, min_window=100))
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.monitoring.live"):
        for record in records(150, seed=11) + records(400, seed=12, sharpness=0.01) + records(400, seed=13):
            monitor.add(record)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "sharpness" in warnings[0].getMessage()
    assert [r.getMessage().startswith("drift cleared") for r in caplog.records if r.levelno == logging.INFO] == [True]
    assert not monitor.drift


def test_a_window_smaller_than_the_minimum_is_a_user_error():
    with pytest.raises(ValueError, match="at least the minimum"):
        DriftRule(window=50, min_window=100)
