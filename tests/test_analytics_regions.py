"""Foot regions from geometry (one rule for every layout) and the per-stride measures built on them: rearfoot
contact, heel and lateral-forefoot impulse fractions, stance impulse and the signed symmetry indices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from insole_common import layouts, metrics as C
from insole_common.layouts import GAITPDB8, KC16, SensorLayout, region_of_ap
from processing.analytics import analyze, symmetry_index
from processing.analytics.strides import stride_rows
from processing.readers.gaitpdb import read_gaitpdb

FS = 100.0


def test_region_rule_is_geometric_and_one_for_every_layout() -> None:
    assert list(region_of_ap(np.array([0.0, 0.26, 0.27, 0.54, 0.55, 1.0, np.nan]))) == [0, 0, 1, 1, 2, 2, -1]
    for layout in layouts.LAYOUTS.values():
        assert layout.regions == tuple(layouts.REGIONS[i] for i in region_of_ap(layout.ap_array))
    # a layout carries no hand-written regions: positions decide
    custom = SensorLayout(name="t", wire_id=0, description="", channels=("a", "b", "c"), ap=(0.2, 0.4, 0.8),
                          ml=(0.0, 0.2, 0.2), source="test")
    assert custom.regions == ("heel", "midfoot", "forefoot")
    assert list(custom.lateral_forefoot_mask) == [False, False, True]
    assert [KC16.channels[i] for i in np.flatnonzero(KC16.region_mask("heel"))] == ["p01", "p02", "p03", "p04"]
    assert [GAITPDB8.channels[i] for i in np.flatnonzero(GAITPDB8.lateral_forefoot_mask)] == ["s6"]


def _one_stride(layout: SensorLayout, heel_samples: int, stance: int = 60, stride: int = 110):
    """Two identical stances: the heel sensors alone for ``heel_samples``, then the lateral forefoot sensors
    alone (load 1 per loaded sensor)."""
    n = 2 * stride + 10
    p = np.zeros((n, layout.n_channels))
    heel, latff = layout.region_mask("heel"), layout.lateral_forefoot_mask
    for start in (0, stride):
        p[start : start + heel_samples, heel] = 1.0
        p[start + heel_samples : start + stance, latff] = 1.0
    contacts = {"hs_i": np.array([0.0, float(stride)]), "to_i": np.array([stance - 1.0, stride + stance - 1.0]),
                "ok": np.array([True, True])}
    return stride_rows("L", contacts, fs=FS, t0_s=0.0, abs0=0, pressure=p, layout=layout, load_unit="kPa")


@pytest.mark.parametrize("heel_samples", [0, 15, 30])
def test_rearfoot_contact_and_impulse_fractions(heel_samples: int) -> None:
    lay = KC16
    row = _one_stride(lay, heel_samples).iloc[0]
    assert row[C.REARFOOT_CONTACT_S] == pytest.approx(heel_samples / FS)
    assert row[C.REARFOOT_CONTACT_PCT] == pytest.approx(100 * heel_samples / FS / row[C.STANCE_TIME_S])
    n_heel, n_latff = lay.region_mask("heel").sum(), lay.lateral_forefoot_mask.sum()
    heel_imp, latff_imp = n_heel * heel_samples, n_latff * (60 - heel_samples)
    assert row[C.HEEL_LOAD_FRACTION] == pytest.approx(heel_imp / (heel_imp + latff_imp))
    assert row[C.LATERAL_FOREFOOT_LOAD_FRACTION] == pytest.approx(latff_imp / (heel_imp + latff_imp))
    assert row[C.STANCE_IMPULSE] == pytest.approx((heel_imp + latff_imp) / FS)


def test_rearfoot_contact_from_a_vendor_cop_without_layout() -> None:
    """Moticon-style input: no sensor map, the vendor COP decides when the rearfoot contact ends."""
    n, stance = 230, 60
    cop_ap = np.full(n, np.nan)
    for start in (0, 110):
        cop_ap[start : start + stance] = np.where(np.arange(stance) < 20, 0.15, 0.7)
    p = np.zeros((n, 16))
    p[~np.isnan(cop_ap)] = 1.0
    contacts = {"hs_i": np.array([0.0, 110.0]), "to_i": np.array([59.0, 169.0]), "ok": np.array([True, True])}
    rows = stride_rows("R", contacts, fs=FS, t0_s=0.0, abs0=0, pressure=p, layout=None, load_unit="N/cm^2",
                       cop_ap=cop_ap, cop_ml=np.where(np.isnan(cop_ap), np.nan, 0.0))
    assert rows[C.REARFOOT_CONTACT_S].iloc[0] == pytest.approx(0.20)
    assert np.isnan(rows[C.HEEL_LOAD_FRACTION].iloc[0])  # no sensor positions: no region shares
    assert rows[C.STANCE_IMPULSE].iloc[0] == pytest.approx(16 * 60 / FS)


def test_symmetry_index_is_one_formula_for_scalars_and_arrays() -> None:
    assert symmetry_index(1.1, 0.9) == pytest.approx(20.0)
    arr = symmetry_index(np.array([1.1, 1.0, np.nan, 0.0]), np.array([0.9, 1.0, 1.0, 0.0]))
    assert arr[:2] == pytest.approx([20.0, 0.0]) and np.isnan(arr[2:]).all()
    assert set(C.SYMMETRY_OF) <= set(C.BY_KEY) and all(v in C.BY_KEY for v in C.SYMMETRY_OF.values())


def test_new_measures_are_catalogued_with_direction_and_evidence() -> None:
    for key, direction in ((C.REARFOOT_CONTACT_S, C.DOWN), (C.REARFOOT_CONTACT_PCT, C.DOWN),
                           (C.HEEL_LOAD_FRACTION, C.DOWN), (C.LATERAL_FOREFOOT_LOAD_FRACTION, C.UP),
                           (C.LOAD_SYMMETRY_PCT, C.EITHER), (C.HEEL_LOAD_SYMMETRY_PCT, C.EITHER)):
        m = C.BY_KEY[key]
        assert m.compensation == direction and ("Phillips" in m.evidence or "Sullivan" in m.evidence)
        if m.daily:
            assert key in C.STRIDE_COLS
    # shares that can be small on a layout are compared relative to the foot's own baseline share
    assert C.BY_KEY[C.HEEL_LOAD_FRACTION].relative and C.BY_KEY[C.LATERAL_FOREFOOT_LOAD_FRACTION].relative


def test_real_gaitpdb_walks_have_plausible_rearfoot_measures() -> None:
    """Control walks of gaitpdb: the rearfoot contact ends early in the stance, the heel and the lateral forefoot
    each carry a share of the stance impulse, and the summary gives the signed load and heel-impulse indices."""
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet-gaitpdb"
    for name in ("GaCo01_01", "GaCo22_01", "SiCo01_01"):
        res = analyze(read_gaitpdb(data / f"{name}.txt"))
        med = res.strides.groupby(C.SIDE)[[C.REARFOOT_CONTACT_PCT, C.HEEL_LOAD_FRACTION,
                                           C.LATERAL_FOREFOOT_LOAD_FRACTION]].median()
        assert med[C.REARFOOT_CONTACT_PCT].between(3, 40).all(), med
        assert med[C.HEEL_LOAD_FRACTION].between(0.05, 0.5).all(), med
        assert med[C.LATERAL_FOREFOOT_LOAD_FRACTION].between(0.03, 0.4).all(), med
        si = res.summary["symmetry_index_pct"]
        assert si[C.STANCE_IMPULSE] is not None and abs(si[C.HEEL_LOAD_FRACTION]) < 60
