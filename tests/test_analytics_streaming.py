"""The streaming analyser gives exactly the batch result, however the data is chunked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from processing.analytics import StreamingAnalyzer, analyze
from processing.readers.auto import read_any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = ["physionet-gaitndd/hunt1.hea", "physionet-gaitndd/als5.hea",  # als5: right sensor dies (flat seconds)
         "physionet-gaitndd/hunt5.hea",  # swings that never reach the off level, rebounds at toe off
         "moticon-opengo-sample/230927_102137.txt", "physionet-gaitpdb/JuCo01_01.txt"]


def stream(rec, rng) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    sa = StreamingAnalyzer.like(rec)
    emitted = []
    pos = {s: 0 for s in rec.feet}
    while any(pos[s] < f.n_samples for s, f in rec.feet.items()):
        for s, f in rec.feet.items():
            if pos[s] >= f.n_samples:
                continue
            n = int(rng.integers(1, 400))
            a, b = pos[s], min(pos[s] + n, f.n_samples)
            sl = lambda x: None if x is None else x[a:b]
            emitted.append(sa.feed(s, f.t0_s + a / f.sample_rate_hz, f.pressure[a:b], total_force_n=sl(f.total_force_n),
                                   acc_g=sl(f.acc_g), gyro_dps=sl(f.gyro_dps), cop_ap=sl(f.cop_ap), cop_ml=sl(f.cop_ml)))
            pos[s] = b
    return sa.finish().strides, emitted


@pytest.mark.parametrize("case", CASES)
def test_stream_equals_batch(case):
    path = DATA / case
    if not path.exists():
        pytest.fail(f"{path} is missing from ../shared/data")
    rec = read_any(path)
    batch = analyze(rec).strides
    streamed, emitted = stream(rec, np.random.default_rng(7))
    assert len(batch) > 5
    pd.testing.assert_frame_equal(streamed, batch, check_exact=False, rtol=1e-12, atol=1e-12)
    # strides were emitted while streaming, not only at the end (latency is about 2 blocks = 10 s)
    n_live = sum(len(e) for e in emitted)
    duration_s = max(f.duration_s for f in rec.feet.values())
    assert n_live >= len(batch) * (1 - 15.0 / duration_s) - 4


def test_discontinuous_chunk_rejected():
    from insole_common.errors import ValidationError
    sa = StreamingAnalyzer({"L": dict(sampling_rate_hz=100.0, t0_s=0.0, layout=None, pressure_unit="N", n_channels=1)})
    sa.feed("L", 0.0, np.zeros((10, 1)))
    with pytest.raises(ValidationError):
        sa.feed("L", 5.0, np.zeros((10, 1)))
