"""Reader for PhysioNet gaitndd (WFDB header ``.hea`` + format-212 ``.let`` / ``.rit``).

One force-sensitive resistor per foot, 300 Hz, 12-bit ADC. The signal is kept
in ADC units (``pressure_unit="adc"``, one channel named ``fsr``). ADC -2048 is both WFDB's
invalid-sample value and the lowest code of the 12-bit converter: an FSR whose
unloaded output sits at the bottom of the range clips there (als5.rit: 26,546
samples in 12,464 runs, every run entered from -2047/-2046). A run of -2048
that touches a sample within ``CLIP_MARGIN_ADC`` of the floor is clipping and
kept at -2048; any other -2048 (e.g. the first sample of records whose header
gives -32768 as first value) becomes NaN. The ``.ts`` reference intervals
are read by :func:`read_gaitndd_ts` (used by the validation tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from insole_common.codec import Side
from insole_common.errors import ValidationError
from insole_common.recording import FootRecording, Recording

#: WFDB format 212 invalid-sample marker (12-bit), also the converter's lowest code
INVALID_ADC = -2048
#: a -2048 run next to a sample this close to the floor is clipping, not missing data
CLIP_MARGIN_ADC = 64
TS_COLUMNS = (
    "time_s", "stride_l_s", "stride_r_s", "swing_l_s", "swing_r_s", "swing_l_pct", "swing_r_pct",
    "stance_l_s", "stance_r_s", "stance_l_pct", "stance_r_pct", "double_support_s", "double_support_pct",
)


def decode_format_212(raw: bytes) -> np.ndarray:
    """Decode WFDB format-212 bytes (two 12-bit samples per 3 bytes) into int16 samples. An odd number of
    samples ends in 2 bytes holding the last one (as WFDB writes it); a single stray byte is ignored."""
    tail = len(raw) % 3
    b = np.frombuffer(raw[: len(raw) - tail], dtype=np.uint8).reshape(-1, 3).astype(np.int16)
    if tail == 2:
        b = np.vstack([b, np.array([raw[-2], raw[-1], 0], dtype=np.int16)])
    s0 = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
    s1 = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
    out = np.empty(2 * len(b), dtype=np.int16)
    out[0::2] = s0
    out[1::2] = s1
    out[out > 2047] -= 4096
    return out[:-1] if tail == 2 else out


def invalid_samples(adc: np.ndarray) -> np.ndarray:
    """Mask of WFDB invalid samples: runs of -2048 not entered from / left to a near-floor value (clipping)."""
    at = adc == INVALID_ADC
    if not at.any():
        return at
    d = np.diff(np.r_[0, at.view(np.int8), 0])
    starts, ends = np.where(d == 1)[0], np.where(d == -1)[0]
    before = adc[np.maximum(starts - 1, 0)]
    after = adc[np.minimum(ends, adc.size - 1)]
    near = lambda v: (v > INVALID_ADC) & (v <= INVALID_ADC + CLIP_MARGIN_ADC)  # noqa: E731
    clipped = (near(before) & (starts > 0)) | (near(after) & (ends < adc.size))
    out = np.zeros(adc.size, dtype=bool)
    for s, e in zip(starts[~clipped], ends[~clipped], strict=True):  # loop over invalid runs (few), not samples
        out[s:e] = True
    return out


def _header_path(path: Path) -> Path:
    return path if path.suffix == ".hea" else path.with_suffix(".hea")


def read_gaitndd(path: str | Path) -> Recording:
    """Read one gaitndd record from its ``.hea`` (or any file of the record)."""
    hea = _header_path(Path(path))
    try:
        lines = [ln.split() for ln in hea.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as exc:
        raise ValidationError(f"{hea}: cannot read WFDB header ({exc})", reason="bad_file") from exc
    try:
        name, n_sig, rate_hz = lines[0][0], int(lines[0][1]), float(lines[0][2])
        # the sample count is optional in WFDB: without it, every sample in the signal file is read
        n_samples = int(lines[0][3]) if len(lines[0]) > 3 else None
        signals = lines[1 : 1 + n_sig]
        if len(signals) != n_sig:
            raise IndexError
    except (IndexError, ValueError):
        raise ValidationError(f"{hea}: malformed WFDB header", reason="bad_header") from None
    feet: dict[Side, FootRecording] = {}
    for sig in signals:
        fname, fmt, desc = sig[0], sig[1], " ".join(sig[8:]).lower()
        if fmt != "212":
            raise ValidationError(f"{hea}: signal {fname} has WFDB format {fmt}; only 212 is supported", reason="unsupported")
        side: Side | None = ("L" if ("left" in desc or fname.endswith(".let"))
                             else "R" if ("right" in desc or fname.endswith(".rit")) else None)
        if side is None:
            raise ValidationError(f"{hea}: cannot tell which foot {fname} is", reason="bad_header")
        try:
            raw = (hea.parent / fname).read_bytes()
        except OSError as exc:
            raise ValidationError(f"{hea.parent / fname}: cannot read ({exc})", reason="bad_file") from exc
        adc = decode_format_212(raw)[:n_samples].astype(np.float64)
        if adc.size == 0:
            raise ValidationError(f"{hea.parent / fname}: no samples", reason="empty")
        adc[invalid_samples(adc)] = np.nan
        feet[side] = FootRecording(side=side, sample_rate_hz=rate_hz, t0_s=0.0, pressure=adc[:, None], pressure_unit="adc",
                                   channel_names=("fsr",), device_id=f"{name}.{fname.rsplit('.', 1)[-1]}")
    if not feet:
        raise ValidationError(f"{hea}: no signals", reason="empty")
    n = min(f.n_samples for f in feet.values())
    # truncated: a signal has fewer samples than declared, or (no count declared) than the other signal
    expected = n_samples if n_samples is not None else max(f.n_samples for f in feet.values())
    meta = {"record": name, "declared_samples": n_samples, "truncated": n < expected}
    return Recording(feet=feet, source_format="gaitndd", meta=meta)


def read_gaitndd_ts(path: str | Path) -> pd.DataFrame:
    """Read a gaitndd ``.ts`` file of reference stride intervals (one row per left stride)."""
    p = Path(path)
    try:
        df = pd.read_csv(p, sep=r"\s+", header=None, names=list(TS_COLUMNS), engine="c")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(f"{p}: cannot read .ts reference ({exc})", reason="bad_file") from exc
    return df
