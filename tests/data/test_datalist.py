"""Tests of the datalist builders of :mod:`monai_pneumonia.data` (patients, split, sources, JSON I/O)."""

from __future__ import annotations

import json
import os
import pickle
import random

import pytest

from monai_pneumonia import data as dl
from monai_pneumonia.data import (
    CsvRowError,
    DatalistError,
    EmptyClassError,
    NoClassFoldersError,
    SourceNotFoundError,
    UnknownLabelError,
    assert_patients_disjoint,
    datalist_from_csv,
    datalist_from_dicom,
    datalist_from_folder,
    load_datalist,
    parse_label,
    patient_from_path,
    pseudonymize,
    split_by_patient,
    write_datalist,
)
from monai_pneumonia.errors import XrayInputError
from tests.data import write_tiny_dicom, write_tiny_image

REAL_TRAIN = "/work/shared/data/chest_xray/train"

#: Public-style names: 6 normal patients (3 images for one), 8 pneumonia patients (some with 2 images).
NORMAL_NAMES = ["IM-0001-0001.jpeg", "IM-0001-0002.jpeg", "IM-0001-0002-0001.jpeg", "IM-0002-0001.jpeg"] + [
    f"NORMAL2-IM-{n:04d}-0001.jpeg" for n in range(3, 7)
]
PNEUMONIA_NAMES = [f"person{n}_bacteria_{n * 10}.jpeg" for n in range(1, 9)] + ["person1_virus_7.jpeg"]


def _public_tree(root, normal="NORMAL", pneumonia="PNEUMONIA"):
    for folder, names in ((normal, NORMAL_NAMES), (pneumonia, PNEUMONIA_NAMES)):
        for name in names:
            write_tiny_image(root / folder / name, "JPEG")
    return root


def _items(n_patients=40, seed=1):
    """Synthetic items: random labels and 1-4 images per patient, some patients with mixed labels."""
    rng = random.Random(seed)
    items = []
    for p in range(n_patients):
        label = int(rng.random() < 0.7)
        for i in range(rng.randint(1, 4)):
            mixed = label if rng.random() < 0.9 else 1 - label
            items.append({"image": f"/d/p{p}_{i}.png", "label": mixed, "patient": f"p{p}"})
    return items


def _patients(items):
    return {item["patient"] for item in items}


# ----------------------------------------------------------------------------------------- patient ids
@pytest.mark.parametrize(
    "path, patient",
    [
        ("/x/PNEUMONIA/person1000_bacteria_2931.jpeg", "person1000"),
        ("person12_virus_44.jpeg", "person12"),
        ("person1_virus_7_1.jpeg", "person1"),
        ("/x/NORMAL/IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0429-0001-0002.jpeg", "IM-0429"),
        ("NORMAL2-IM-0383-0001.jpeg", "NORMAL2-IM-0383"),
        ("NORMAL2-IM-0383-0001-0001.png", "NORMAL2-IM-0383"),
        ("scan.png", None),
        ("IM-0115.jpeg", None),
    ],
)
def test_patient_from_public_names(path, patient):
    assert patient_from_path(path) == patient


def test_patient_from_user_pattern():
    assert patient_from_path("/data/PNEUMONIA/P017/img3.dcm", r"/(P\d+)/") == "P017"
    assert patient_from_path("/data/x.dcm", r"/(P\d+)/") is None
    with pytest.raises(ValueError, match="exactly one group"):
        patient_from_path("a", r"(a)(b)")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        patient_from_path("a", r"(")


def test_parse_label():
    assert [parse_label(v) for v in ("0", 1, " normal ", "PNEUMONIA", "Pneumonia")] == [0, 1, 0, 1, 1]
    with pytest.raises(UnknownLabelError, match=r"f\.csv: line 3: unknown label 'covid'"):
        parse_label("covid", "f.csv", 3)


# -------------------------------------------------------------------------------------------- the split
@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("val_fraction, test_fraction", [(0.1, 0.0), (0.25, 0.2), (0.5, 0.4), (0.9, 0.0)])
def test_patient_never_in_two_splits(seed, val_fraction, test_fraction):
    items = _items(seed=seed)
    datalist = split_by_patient(items, val_fraction, test_fraction, seed)
    splits = [_patients(datalist[name]) for name in dl.SPLITS]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert sum(len(datalist[name]) for name in dl.SPLITS) == len(items)
    assert datalist["training"] and datalist["validation"]  # >= 1 patient per class kept on each side
    assert bool(datalist["test"]) == (test_fraction > 0)
    assert_patients_disjoint(datalist)


def test_split_is_stratified_by_patient_class():
    items = [{"image": f"/n{p}.png", "label": 0, "patient": f"n{p}"} for p in range(20)]
    items += [{"image": f"/p{p}_{i}.png", "label": 1, "patient": f"p{p}"} for p in range(40) for i in range(2)]
    summary = dl.summarize(split_by_patient(items, 0.1, 0.2, seed=3))
    assert summary.counts["validation"]["patients"] == {"normal": 2, "pneumonia": 4}
    assert summary.counts["test"]["patients"] == {"normal": 4, "pneumonia": 8}
    assert summary.counts["test"]["images"] == {"normal": 4, "pneumonia": 16}


def test_split_deterministic_and_order_independent():
    items = _items()
    reference = split_by_patient(items, 0.2, 0.1, seed=5)
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    assert split_by_patient(shuffled, 0.2, 0.1, seed=5) == reference
    assert split_by_patient(items, 0.2, 0.1, seed=6) != reference
    assert json.loads(json.dumps(reference)) == reference


def test_validation_patients_forced():
    items = _items()
    datalist = split_by_patient(items, val_fraction=0.0, seed=0, validation_patients=r"^p1\d$")
    assert _patients(datalist["validation"]) == {f"p1{d}" for d in range(10)}
    assert not any(p.startswith("p1") and len(p) == 3 for p in _patients(datalist["training"]))


@pytest.mark.parametrize("val, test", [(-0.1, 0.0), (1.0, 0.0), (0.6, 0.4)])
def test_bad_fractions(val, test):
    with pytest.raises(ValueError, match="must be in"):
        split_by_patient(_items(), val, test)


def test_assert_patients_disjoint_raises():
    with pytest.raises(AssertionError, match="'a'"):
        assert_patients_disjoint({"training": [{"patient": "a"}], "validation": [{"patient": "a"}]})


# ------------------------------------------------------------------------------------------ class folders
def test_folder_case_insensitive_recursive_and_patients(tmp_path):
    _public_tree(tmp_path, normal="normal", pneumonia="Pneumonia")
    write_tiny_dicom(tmp_path / "Pneumonia" / "site" / "IM00001", "1.2.3.1")  # extensionless DICOM, own patient
    (tmp_path / "normal" / "readme.txt").write_text("x")
    (tmp_path / "other").mkdir()
    datalist, summary = datalist_from_folder(tmp_path, val_fraction=0.2, seed=0)
    everything = [item for split in dl.SPLITS for item in datalist[split]]
    assert len(everything) == len(NORMAL_NAMES) + len(PNEUMONIA_NAMES) + 1
    by_name = {os.path.basename(item["image"]): item for item in everything}
    assert by_name["IM-0001-0002-0001.jpeg"]["patient"] == "IM-0001" and by_name["IM-0001-0001.jpeg"]["label"] == 0
    assert by_name["person1_virus_7.jpeg"]["patient"] == "person1" and by_name["IM00001"]["label"] == 1
    assert all(os.path.isabs(item["image"]) for item in everything)
    assert any("1 file(s) match no patient pattern" in w for w in summary.warnings)
    images = sum(sum(summary.counts[s]["images"].values()) for s in dl.SPLITS)
    assert images == len(everything)
    assert "validation" in str(summary) and "warning:" in str(summary)


def test_folder_normal2_held_out(tmp_path):
    _public_tree(tmp_path)
    datalist, summary = datalist_from_folder(tmp_path, val_fraction=0.0, validation_patients="^NORMAL2-")
    assert _patients(datalist["validation"]) == {f"NORMAL2-IM-{n:04d}" for n in range(3, 7)}
    assert summary.counts["validation"]["patients"] == {"normal": 4, "pneumonia": 0}


def test_folder_errors(tmp_path):
    with pytest.raises(SourceNotFoundError, match="missing: no such folder"):
        datalist_from_folder(tmp_path / "missing")
    (tmp_path / "cats").mkdir()
    with pytest.raises(NoClassFoldersError, match=str(tmp_path)):
        datalist_from_folder(tmp_path)
    write_tiny_image(tmp_path / "NORMAL" / "a.png")
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "PNEUMONIA" / "a.txt").write_text("x")
    with pytest.raises(EmptyClassError, match="PNEUMONIA has no image"):
        datalist_from_folder(tmp_path)
    assert issubclass(EmptyClassError, ValueError) and issubclass(EmptyClassError, DatalistError)


def test_datalist_errors_are_value_errors_not_refused_radiographs(tmp_path):
    """A bad datalist source is the user's input, not a film refused by the loader (no XrayInputError)."""
    for error_type in (DatalistError, SourceNotFoundError, NoClassFoldersError, EmptyClassError,
                       UnknownLabelError, CsvRowError):
        assert issubclass(error_type, ValueError) and not issubclass(error_type, XrayInputError)
    with pytest.raises(SourceNotFoundError) as caught:
        datalist_from_folder(tmp_path / "missing")
    assert caught.value.path == str(tmp_path / "missing") and caught.value.reason == "no such folder"


# -------------------------------------------------------------------------------------------------- CSV
def test_csv_source(tmp_path):
    rows = ["path,label,patient", "imgs/a.png,NORMAL,", "imgs/b.png,0,p2", "/abs/c.png,pneumonia,p3", "", "d.png,1,p4"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    datalist, _ = datalist_from_csv(tmp_path / "labels.csv", val_fraction=0.0)
    items = {item["image"]: item for item in datalist["training"]}
    assert items[str(tmp_path / "imgs" / "a.png")] == {
        "image": str(tmp_path / "imgs" / "a.png"),
        "label": 0,
        "patient": str(tmp_path / "imgs" / "a.png"),  # no id given or parsed: its own patient
    }
    assert items["/abs/c.png"]["label"] == 1 and items[str(tmp_path / "d.png")]["patient"] == "p4"


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("file,label\na.png,0\n", CsvRowError, "line 1: header"),
        ("path,label\na.png,0\nb.png\n", CsvRowError, "line 3: 1 field"),
        ("path,label\na.png,0\n,1\n", CsvRowError, "line 3: empty path"),
        ("path,label\na.png,0\nb.png,maybe\n", UnknownLabelError, "line 3: unknown label 'maybe'"),
        ("path,label\na.png,0\nb.png,0\n", EmptyClassError, "PNEUMONIA"),
    ],
)
def test_csv_errors(tmp_path, text, error, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(error, match=message) as caught:
        datalist_from_csv(tmp_path / "bad.csv")
    assert str(tmp_path / "bad.csv") in str(caught.value)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


# ------------------------------------------------------------------------------------------------ DICOM
def test_dicom_source_pseudonymised_and_unlabeled_reported(tmp_path):
    dicom_dir = tmp_path / "pacs"
    write_tiny_dicom(dicom_dir / "s1" / "IM1", "1.2.1", patient_id="MRN001")
    write_tiny_dicom(dicom_dir / "s1" / "IM2", "1.2.2", patient_id="MRN001")
    write_tiny_dicom(dicom_dir / "s2" / "IM3.dcm", "1.2.3", patient_id="", study_uid="9.8.7")
    write_tiny_dicom(dicom_dir / "s3" / "IM4", "1.2.4", patient_id="MRN003")
    write_tiny_dicom(dicom_dir / "s3" / "IM5", "1.2.5", patient_id="MRN004")  # no label
    write_tiny_image(dicom_dir / "s3" / "thumb.png")  # not DICOM: not part of a DICOM source
    labels = tmp_path / "labels.csv"
    labels.write_text("sop_instance_uid,label\n1.2.1,PNEUMONIA\n1.2.2,1\n1.2.3,normal\n1.2.4,0\n1.2.99,1\n")
    datalist, summary = datalist_from_dicom(dicom_dir, labels, val_fraction=0.0)
    items = {os.path.basename(item["image"]): item for item in datalist["training"]}
    assert sorted(items) == ["IM1", "IM2", "IM3.dcm", "IM4"]
    assert items["IM1"]["patient"] == items["IM2"]["patient"] == pseudonymize("MRN001")
    assert items["IM3.dcm"]["patient"] == pseudonymize("9.8.7") and items["IM3.dcm"]["label"] == 0
    assert summary.unlabeled == [str(dicom_dir / "s3" / "IM5")]
    assert any("match no DICOM file" in w for w in summary.warnings)
    text = json.dumps(datalist)
    assert "MRN" not in text and "Doe" not in text
    assert pseudonymize("MRN001", salt="site") != pseudonymize("MRN001")


def test_dicom_errors(tmp_path):
    write_tiny_dicom(tmp_path / "d" / "IM1", "1.2.1")
    (tmp_path / "l.csv").write_text("sop_instance_uid,label\n1.2.1,1\n1.2.1,0\n")
    with pytest.raises(SourceNotFoundError, match="nope.csv"):
        datalist_from_dicom(tmp_path / "d", tmp_path / "nope.csv")
    with pytest.raises(CsvRowError, match="line 3: SOP Instance UID 1.2.1 labelled twice"):
        datalist_from_dicom(tmp_path / "d", tmp_path / "l.csv")
    (tmp_path / "l.csv").write_text("sop_instance_uid,label\n1.2.1,1\n")
    with pytest.raises(EmptyClassError, match="NORMAL"):
        datalist_from_dicom(tmp_path / "d", tmp_path / "l.csv")


# ------------------------------------------------------------------------------------------ load / write
def test_load_datalist_from_folder_and_json_round_trip(tmp_path):
    _public_tree(tmp_path / "data")
    built = load_datalist(dataset_dir=tmp_path / "data", val_fraction=0.2, seed=1)
    path = write_datalist(built, tmp_path / "out" / "datalist.json")
    assert load_datalist(datalist=path) == built
    with pytest.raises(ValueError, match="needs dataset_dir or datalist"):
        load_datalist()


def test_load_json_relative_paths_split_only_without_validation(tmp_path):
    training = [{"image": f"img/{n}", "label": "NORMAL" if n.startswith("IM") else 1} for n in NORMAL_NAMES]
    training += [{"image": f"img/{n}", "label": 1} for n in PNEUMONIA_NAMES]
    (tmp_path / "list.json").write_text(json.dumps({"name": "x", "training": training}))
    loaded = load_datalist(datalist=tmp_path / "list.json", val_fraction=0.3, seed=2, test_fraction=0.2)
    assert loaded["validation"] and loaded["test"] and "name" not in loaded
    assert all(item["image"].startswith(str(tmp_path / "img")) for item in loaded["training"])
    assert_patients_disjoint(loaded)
    given = {"training": training[:2], "validation": training[5:6]}
    (tmp_path / "given.json").write_text(json.dumps(given))
    loaded = load_datalist(datalist=tmp_path / "given.json")
    assert len(loaded["training"]) == 2 and len(loaded["validation"]) == 1 and loaded["test"] == []


def test_load_json_errors(tmp_path):
    with pytest.raises(SourceNotFoundError):
        load_datalist(datalist=tmp_path / "none.json")
    cases = {
        "a.json": ("{", "not valid JSON"),
        "b.json": ('{"validation": []}', "'training' list"),
        "c.json": ('{"training": [{"image": "a"}]}', r"training\[0\] needs"),
        "d.json": ('{"training": [{"image": "a", "label": 2}]}', "unknown label"),
        "e.json": (
            '{"training": [{"image": "a", "label": 0, "patient": "p"}],'
            ' "validation": [{"image": "b", "label": 0, "patient": "p"}]}',
            "'p' is in both",
        ),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DatalistError, match=message):
            load_datalist(datalist=tmp_path / name)


# -------------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(not os.path.isdir(REAL_TRAIN), reason="public training split not available")
def test_real_training_split():
    datalist, summary = datalist_from_folder(REAL_TRAIN, val_fraction=0.1, seed=0)
    assert sum(len(datalist[split]) for split in dl.SPLITS) == 5216
    per_class = {name: sum(summary.counts[s]["images"][name] for s in dl.SPLITS) for name in ("normal", "pneumonia")}
    assert per_class == {"normal": 1341, "pneumonia": 3875}
    assert_patients_disjoint(datalist)
    assert not summary.warnings  # every public file name yields a patient id
    assert _patients(datalist["training"]).isdisjoint(_patients(datalist["validation"]))


def test_evaluation_items_of_a_folder_are_logged_as_the_evaluation_set(tmp_path, caplog):
    """The summary names what is evaluated: not the builder's 'training' list of an unsplit folder."""
    import logging

    write_tiny_image(tmp_path / "NORMAL" / "IM-0001-0001.jpeg", "JPEG")
    write_tiny_image(tmp_path / "PNEUMONIA" / "person1_bacteria_1.jpeg", "JPEG")
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.data.datalist"):
        items = dl.evaluation_items(dataset_dir=tmp_path)
    assert len(items) == 2
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluation set from"))
    rows = [line.split()[0] for line in summary.splitlines()[2:]]
    assert rows == ["evaluation"]
