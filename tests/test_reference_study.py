"""The machinery of scripts/gaitndd_reference_study.py (docs/validation.md, round 6): its conclusion rests on
the shift between two edges having the right sign and the stride errors being counted like the matching's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "gaitndd_reference_study", Path(__file__).resolve().parents[1] / "scripts" / "gaitndd_reference_study.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)


def test_best_shift_maps_one_edge_onto_the_other():
    t = np.arange(120, dtype=float)
    edge = 1 / (1 + np.exp(-(t - 60) / 3))  # a loading edge at sample 60
    later = 1 / (1 + np.exp(-(t - 67) / 3))  # the same edge 7 samples later
    rms, shift = study.best_shifts(np.stack([edge, later]), pad_n=12)
    assert shift[0, 1] == 7 and shift[1, 0] == -7  # sample i of edge 0 is sample i + 7 of edge 1
    assert rms[0, 1] < 1e-3 and np.isinf(rms[0, 0])
    # a reference at sample 61 of edge 1 predicts 61 - 7 = 54 for edge 0, as study() computes it
    assert 61 - shift[0, 1] == 54


def test_stride_errors_are_counted_like_the_matching():
    ref_s = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0])
    est_s = np.array([0.0, 1.004, 2.0, 3.2, 10.0, 11.0])  # +4 / -4 ms, one stride off by 200 ms, one pause
    total_ms, n = study.stride_mae_ms(ref_s, est_s)
    assert n == 3  # the 200 ms miss is beyond the 100 ms tolerance, the 7 s pause is not a stride
    assert np.isclose(total_ms, 8.0)
    # two heel strikes two strides apart (a missed one between) are not a stride
    total_ms, n = study.stride_mae_ms(ref_s, est_s, np.array([True, False, True, True, True]))
    assert n == 2 and np.isclose(total_ms, 4.0)
