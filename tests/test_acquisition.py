"""pipeline.io.acquisition: the acquisition of a scan read from the real DICOM series in ``../shared/data`` (see its
SOURCES.md) through pipeline.io.dicom, checked against their headers read with plain pydicom, and from manifest
columns."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from pipeline.errors import InputError
from pipeline.io.acquisition import FIELDS, KEYS, UNKNOWN, Acquisition, from_columns, from_header
from pipeline.io.dicom import read_ct_series

SERIES = ("ibsi_sts_019/dicom/CT/image", "totalsegmentator/example_ct_dicom", "dcmqi_ct3slice/ct",
          "rt_utils/mock_data")
#: written out from the headers (dcmdump), the oracle for two series that cover a missing description, a
#: two-valued Siemens kernel, a contrast agent, and a DS thickness that is not a short decimal
EXPECTED = {
    "ibsi_sts_019/dicom/CT/image": {
        "study_description": "IBSI_1_STS_019_CT", "series_description": "IBSI_1_STS_019_CT_image",
        "manufacturer": "GE MEDICAL SYSTEMS", "manufacturer_model": "Discovery ST",
        "convolution_kernel": "SOFT", "slice_thickness_mm": 3.26999999999998, "kvp": 140.0},
    "totalsegmentator/example_ct_dicom": {
        "series_description": "CT Body 3.0", "manufacturer": "SIEMENS",
        "manufacturer_model": "Biograph40_mCT 4R", "convolution_kernel": "Br38f\\3", "slice_thickness_mm": 3.0,
        "kvp": 120.0, "contrast_agent": "APPLIED"},
}


def _tag_value(header: pydicom.Dataset, keyword: str) -> object:
    """The tag as a person reads it in the header: None where absent or empty, a list for several values."""
    element = header.get(keyword)
    if element is None or element == "":
        return None
    return list(element) if isinstance(element, pydicom.multival.MultiValue) else element


@pytest.mark.parametrize("folder", SERIES)
def test_the_series_acquisition_is_its_first_slices_header(shared_data: Path, folder: str) -> None:
    series = read_ct_series(shared_data / folder)
    header = pydicom.dcmread(series.files[0], stop_before_pixels=True)
    stored = series.acquisition.record() or {}
    assert set(stored) <= set(KEYS)
    for field in FIELDS:
        tag = _tag_value(header, field.keyword)
        if tag is None:
            assert field.key not in stored, field.key
        elif field.kind == "number":
            assert stored[field.key] == float(tag) and isinstance(stored[field.key], float), field.key
        else:
            assert stored[field.key] == ("\\".join(tag) if isinstance(tag, list) else str(tag)), field.key
    if folder in EXPECTED:
        assert stored == EXPECTED[folder]


def test_a_garbled_header_value_is_left_out_with_a_warning(shared_data: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    path = shared_data / "ibsi_sts_019" / "dicom" / "CT" / "image" / "000000.dcm"
    header = pydicom.dcmread(path, stop_before_pixels=True)
    header._dict[Tag("KVP")] = RawDataElement(Tag("KVP"), "DS", 4, b"abc ", 0, False, True)
    header._dict[Tag("SliceThickness")] = RawDataElement(Tag("SliceThickness"), "DS", 2, b"0 ", 0, False, True)
    header.ConvolutionKernel = ["B30f", " ", ""]
    header.StudyDescription = "  "
    with caplog.at_level(logging.WARNING, logger="pipeline.io.acquisition"):
        acquisition = from_header(header, path)
    record = acquisition.record() or {}
    assert {"kvp", "slice_thickness_mm", "study_description"}.isdisjoint(record)
    assert record["convolution_kernel"] == "B30f" and record["manufacturer"] == "GE MEDICAL SYSTEMS"
    said = caplog.text
    assert str(path) in said and "KVP 'abc' is not a number" in said and "SliceThickness '0' is not a positive" in said


def test_manifest_columns_are_normalised_like_the_header() -> None:
    row = {"case": "a", "ct": "a.nii.gz", "manufacturer": " Siemens ", "kvp": "120", "slice_thickness_mm": "1.5",
           "study_date": "20240131", "convolution_kernel": "", "contrast_agent": None, "scanner_room": "B2"}
    acquisition = from_columns(row, "m.csv:2")
    assert acquisition.record() == {"manufacturer": "Siemens", "slice_thickness_mm": 1.5, "kvp": 120.0}
    assert from_columns({"case": "a", "ct": "a.nii.gz"}, "m.csv:2") == UNKNOWN and UNKNOWN.record() is None


@pytest.mark.parametrize(("column", "value", "message"), [
    ("kvp", "120kV", "column kvp: '120kV' is not a number"),
    ("slice_thickness_mm", "2,5", "column slice_thickness_mm: '2,5' is not a number"),
    ("slice_thickness_mm", "-1", "column slice_thickness_mm: '-1' is not a positive number"),
    ("kvp", "nan", "column kvp: 'nan' is not a positive number"),
])
def test_a_malformed_manifest_value_names_the_row_and_column(column: str, value: str, message: str) -> None:
    with pytest.raises(InputError, match="^night.csv:3: " + message):
        from_columns({column: value}, "night.csv:3")


def test_combined_keeps_the_header_and_fills_its_gaps_and_a_record_reads_back() -> None:
    header = Acquisition.of({"manufacturer": "SIEMENS", "kvp": 120.0})
    listed = Acquisition.of({"manufacturer": "GE", "contrast_agent": "Omnipaque"})
    both = header.combined(listed)
    assert both.record() == {"manufacturer": "SIEMENS", "kvp": 120.0, "contrast_agent": "Omnipaque"}
    assert header.conflicts(listed) == ["manufacturer"]
    assert [key for key, _ in both.values] == [k for k in KEYS if k in both.record()], "FIELDS order"
    assert Acquisition.from_record({**both.record(), "added_by_a_later_version": 1}) == both
    assert Acquisition.from_record(None) == UNKNOWN
    thickness = next(f for f in FIELDS if f.key == "slice_thickness_mm")
    assert thickness.shown(3.26999999999998) == "3.27 mm"
    with pytest.raises(ValueError, match="not acquisition keys"):
        Acquisition.of({"scanner_room": "B2"})


def test_the_scanner_is_manufacturer_and_model_or_unknown() -> None:
    assert Acquisition.of({"manufacturer": "SIEMENS", "manufacturer_model": "SOMATOM Force"}).scanner() == \
        "SIEMENS SOMATOM Force"
    assert Acquisition.of({"manufacturer": "GE"}).scanner() == "GE"
    assert Acquisition.of({"kvp": 120.0}).scanner() is None


def test_no_study_date_is_read_from_a_header_or_a_manifest(shared_data: Path) -> None:
    """The study date identifies the patient's visit; the store keeps none (pipeline/io/acquisition.py)."""
    series = read_ct_series(shared_data / "totalsegmentator/example_ct_dicom")
    assert pydicom.dcmread(series.files[0], stop_before_pixels=True).StudyDate
    assert "study_date" not in (series.acquisition.record() or {}) and "study_date" not in KEYS
    assert from_columns({"study_date": "2024-01-31"}, "m.csv:2") == UNKNOWN
