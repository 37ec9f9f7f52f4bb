"""Readers for gaitpdb, gaitndd, Moticon text exports and the kinetic format; format detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from insole_common.errors import ValidationError
from processing.readers.auto import detect_format, read_any
from processing.readers.gaitndd import decode_format_212
from processing.readers.kinetic import write_recording

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():  # CI has ../shared beside the repo: absence is a failure, not a skip
    raise RuntimeError(f"{DATA} is missing: the real recordings must sit beside the repository")


def test_format_212_decoder_known_values():
    # s0 = 0x123, s1 = 0x456 -> bytes 0x23, 0x41, 0x56 ; negative: 0xFFF -> -1
    assert decode_format_212(bytes([0x23, 0x41, 0x56])).tolist() == [0x123, 0x456]
    assert decode_format_212(bytes([0xFF, 0xFF, 0x00])).tolist() == [-1, -256]
    # an odd number of samples: WFDB writes the last one in 2 bytes
    assert decode_format_212(bytes([0x23, 0x41, 0x56, 0x89, 0x07])).tolist() == [0x123, 0x456, 0x789]


def test_gaitndd_header_first_value_and_checksum():
    rec = read_any(DATA / "physionet-gaitndd" / "control1.hea")
    hea = (DATA / "physionet-gaitndd" / "control1.hea").read_text().split("\n")
    first_l, csum_l = int(hea[1].split()[5]), int(hea[1].split()[6])
    x = rec.feet["L"].pressure[:, 0]
    assert rec.feet["L"].sample_rate_hz == 300 and x.size == 90000
    assert x[0] == first_l
    assert (int(np.nansum(x)) & 0xFFFF) == (csum_l & 0xFFFF)


def test_gaitndd_adc_floor_is_clipping_not_missing():
    # als5.rit sits at the 12-bit floor (-2048, entered from -2047/-2046) once its sensor fails: clipped samples,
    # kept; a lone -2048 not next to the floor (first sample of control3.rit, header first value -32768) is missing
    als5 = read_any(DATA / "physionet-gaitndd" / "als5.hea").feet["R"].pressure[:, 0]
    assert np.isnan(als5).sum() == 0 and (als5 == -2048).sum() == 26546
    c3 = read_any(DATA / "physionet-gaitndd" / "control3.hea").feet["R"].pressure[:, 0]
    assert np.isnan(c3[0]) and np.isnan(c3).sum() == 1


def test_gaitpdb_totals_and_layout():
    rec = read_any(DATA / "physionet-gaitpdb" / "GaCo01_01.txt")
    f = rec.feet["R"]
    assert f.layout.name == "gaitpdb8" and f.sample_rate_hz == 100
    assert np.allclose(np.nansum(f.pressure, axis=1), f.total_force_n, atol=0.02)
    assert f.n_samples == 12119


def test_moticon_missing_rows_and_events():
    rec = read_any(DATA / "moticon-opengo-sample" / "230927_102114.txt")
    assert rec.source_format == "moticon"
    assert rec.feet["L"].missing.sum() == 63 + 1  # 63 empty rows + the 0.02 s gap
    ev = rec.meta["vendor_events"]
    assert {e["event"] for e in ev} == {"heel_strike", "toe_off"}
    ml = rec.feet["L"].cop_ml
    assert np.nanmin(ml) >= -0.5 and np.nanmax(ml) <= 0.5


def test_moticon_event_sample_file():
    rec = read_any(DATA / "moticon-opengo-sample" / "walk_data_with_events" / "text_export.txt")
    assert any(e["event"] == "heel_strike" for e in rec.meta["vendor_events"])


def test_kinetic_roundtrip_and_detection(tmp_path: Path):
    rec = read_any(DATA / "physionet-gaitpdb" / "JuCo01_01.txt")
    out = write_recording(rec, tmp_path / "rec")
    assert detect_format(out) == "kinetic"
    back = read_any(out)
    assert np.allclose(back.feet["L"].pressure, rec.feet["L"].pressure, equal_nan=True)


def test_unknown_format(tmp_path: Path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValidationError):
        read_any(f)
