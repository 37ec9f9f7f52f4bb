"""Flags in plain clinical words: the one place that turns a stored flag (:mod:`storage.flags`) into what the
therapist reads, from the metric catalogue's label, unit, decimals and compensation direction
(:mod:`insole_common.metrics`), so a metric added there is worded without a change here.

* A *series* is what the detector watches and stores under ``flags.metric`` / ``baselines.metric``: a metric
  (``stride_length_m``), a metric of one foot (``lateral_load_fraction_L``) or a symmetry index (``si_...``).
* Numbers are shown in the catalogue's unit with its decimals; a ``fraction of load`` is shown as per cent
  of the load (×100, two decimals fewer), and a difference of per cents in percentage points.
* State words never sit next to a metric as if they were its direction: "flag raised: stride time longer than
  baseline", never "Stride time raised".
* The change against baseline is given in the display unit and, where the baseline is clearly away from zero
  (at least one real-change threshold), in per cent of the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

from insole_common import metrics as C

#: the detector's series behind a trend metric that is not its own series
SERIES_OF = {C.STANCE_SYMMETRY_PCT: f"si_{C.STANCE_TIME_S}"}
_METRIC_OF = {series: metric for metric, series in SERIES_OF.items()}

#: what a kind of compensation (:data:`processing.detection_records.KINDS`) means; others: the kind's name
KIND_WORDS = {
    "lateral_shift": "weight moved to the outside",
    "shortened_stride": "shorter strides",
    "limp": "limp, less time on this foot",
    "heel_offloading": "weight moved off the heel",
}
SIDE_WORDS = {"L": "Left foot", "R": "Right foot", None: "Both feet"}
#: units whose "more" reads "longer"
_LENGTHS = ("s", "m")


@dataclass(frozen=True)
class Display:
    """How the values of one series are shown."""

    label: str
    unit: str
    decimals: int
    #: shown value = stored value × scale
    scale: float = 1.0
    #: the catalogue entry (None: not in the catalogue)
    metric: C.Metric | None = None

    def value(self, x: float | None) -> float | None:
        """``x`` in the display unit, rounded to the display decimals (None for a missing or non-finite value)."""
        if x is None or not math.isfinite(float(x)):
            return None
        return round(float(x) * self.scale, self.decimals)

    def text(self, x: float | None, *, signed: bool = False, unit: str | None = None) -> str:
        """``x`` as text with its unit ("58.0 %", "1.123 s"); "–" when missing."""
        v = self.value(x)
        if v is None:
            return "–"
        u = self.unit if unit is None else unit
        number = f"{v:+.{self.decimals}f}" if signed else f"{v:.{self.decimals}f}"
        return f"{number} {u}".strip()

    @property
    def digits(self) -> int:
        """Decimals of a value in the stored unit: one more than shown (a chart's points sit between its ticks)."""
        return self.decimals + round(math.log10(self.scale)) + 1

    def stored(self, x: float | None) -> float | None:
        """``x`` in the stored unit rounded to :attr:`digits` (None for a missing or non-finite value)."""
        return None if x is None or not math.isfinite(float(x)) else round(float(x), self.digits)

    @property
    def percent_like(self) -> bool:
        return self.unit.startswith("%")


def display(series: str) -> Display:
    """Label, unit and decimals of a metric or series key (``{key}_L`` / ``{key}_R``, ``si_...``)."""
    key = _METRIC_OF.get(series, series)
    if key.startswith("si_") and key[3:] in C.BY_KEY:
        return Display(f"{C.BY_KEY[key[3:]].label} symmetry (L−R)", "%", 1)
    try:
        m = C.metric(key)
    except KeyError:
        return Display(key, "", 2)
    if m.unit == "fraction of load":
        return Display(m.label, "% of load", max(m.decimals - 2, 0), 100.0, m)
    return Display(m.label, m.unit, m.decimals, 1.0, m)


def metric_of(series: str) -> C.Metric | None:
    """The catalogue entry of a series (``si_stance_time_s``: the stance symmetry), None when there is none."""
    try:
        return C.metric(_METRIC_OF.get(series, series))
    except KeyError:
        return None


def side_of(series: str) -> str | None:
    """'L' / 'R' for a per-side series, else None."""
    base, _, side = series.rpartition("_")
    return side if side in ("L", "R") and base in C.BY_KEY else None


def day_text(day: str | None) -> str:
    """``2026-11-14`` -> ``14 Nov 2026`` (with the year, never ambiguous)."""
    if not day:
        return "–"
    d = date.fromisoformat(str(day)[:10])
    return f"{d.day} {d:%b %Y}"


def _lower_first(label: str) -> str:
    """``Lateral load`` -> ``lateral load``; acronyms (``COP``) keep their case."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def comparative(series: str, up: bool) -> str:
    """"longer" / "shorter" for times and lengths, else "higher" / "lower"."""
    unit = display(series).unit
    if unit in _LENGTHS:
        return "longer" if up else "shorter"
    return "higher" if up else "lower"


def change_words(series: str, direction: str | None) -> str:
    """"lateral load higher than baseline" (``direction`` 'up' / 'down'; otherwise "away from baseline")."""
    label = _lower_first(display(series).label)
    if direction not in ("up", "down"):
        return f"{label} away from baseline"
    return f"{label} {comparative(series, direction == 'up')} than baseline"


def compensation_note(series: str, direction: str | None) -> str:
    """Whether the change goes the way heel pain moves this metric (catalogue ``compensation`` and ``evidence``)."""
    m = metric_of(series)
    if m is None or m.compensation is None or direction not in ("up", "down"):
        return ""
    if m.compensation == C.EITHER:
        return f"Heel pain can move it either way ({m.evidence})."
    agrees = (m.compensation == C.UP) == (direction == "up")
    return (f"This is the direction heel pain moves it ({m.evidence})." if agrees else
            f"This is opposite to the direction heel pain moves it ({m.evidence}).")


@dataclass(frozen=True)
class Change:
    """A flag's current value against its baseline, in the display unit."""

    baseline: float | None
    current: float | None
    threshold: float | None
    delta: float | None
    #: per cent of the baseline (None where the baseline is within one threshold of zero)
    delta_pct: float | None
    #: |current − baseline| / threshold: how far beyond the real-change threshold (1 = on it)
    beyond: float | None


def change(series: str, baseline: float | None, current: float | None, threshold: float | None) -> Change:
    d = display(series)
    ok = all(x is not None and math.isfinite(float(x)) for x in (baseline, current))
    delta = float(current) - float(baseline) if ok else None  # type: ignore[arg-type] - checked by ok
    thr = float(threshold) if threshold is not None and math.isfinite(float(threshold)) else None
    pct = None
    if delta is not None and thr is not None and abs(float(baseline)) >= thr > 0:  # type: ignore[arg-type] - ok
        pct = round(100.0 * delta / abs(float(baseline)), 1)  # type: ignore[arg-type] - ok
    beyond = round(abs(delta) / thr, 2) if delta is not None and thr else None
    return Change(d.value(baseline), d.value(current), d.value(thr), d.value(delta), pct, beyond)


def change_text(series: str, c: Change) -> str:
    """"+6.0 points, +11.5 %" / "+0.050 s, +4.5 %" (the difference against baseline)."""
    d = display(series)
    if c.delta is None:
        return "change unknown"
    unit = "points" if d.percent_like else d.unit
    out = f"{c.delta:+.{d.decimals}f} {unit}".strip()
    return out if c.delta_pct is None else f"{out}, {c.delta_pct:+.1f} %"


def sentence(flag: dict) -> str:
    """One line in clinical words, e.g. "Left foot: weight moved to the outside since 14 Nov 2026: lateral load
    58.0 % of load against 52.0 % of load at baseline (+6.0 points, +11.5 %); real-change threshold 1.8 % of load."
    ``flag``: a row of :func:`storage.flags.active_flags` (or an event of :func:`storage.flags.flags`)."""
    series, side = flag["metric"], flag.get("side") or side_of(flag["metric"])
    d = display(series)
    c = change(series, flag.get("baseline"), flag.get("current"), flag.get("threshold"))
    kind = KIND_WORDS.get(flag.get("kind") or "", str(flag.get("kind") or "change").replace("_", " "))
    since = day_text(flag.get("since_day") or flag.get("day"))
    return (f"{SIDE_WORDS.get(side, SIDE_WORDS[None])}: {kind} since {since}: {_lower_first(d.label)} "
            f"{d.text(flag.get('current'))} against {d.text(flag.get('baseline'))} at baseline ({change_text(series, c)}); "
            f"real-change threshold {d.text(flag.get('threshold'))}.")


def event_words(event: dict) -> str:
    """A stored flag event (:func:`storage.flags.flags`) in words: "flag raised: stride time longer than
    baseline", "improving: …", "flag cleared: … back within baseline"."""
    series = event["metric"]
    direction = (event.get("evidence") or {}).get("direction") or event.get("direction")
    label = _lower_first(display(series).label)
    state = event.get("state")
    if state == "cleared":
        return f"flag cleared: {label} back within baseline"
    if state == "improved":
        return f"improving, still flagged: {change_words(series, direction)}"
    return f"flag raised: {change_words(series, direction)}"


def rounded_evidence(series: str, evidence: dict) -> dict:
    """The stored evidence with its numbers rounded to the series' stored-unit decimals (+1), for display."""
    d = display(series)

    def r(x):
        if isinstance(x, float):
            return d.stored(x)
        if isinstance(x, list):
            return [r(v) for v in x]
        if isinstance(x, dict):
            return {k: r(v) for k, v in x.items()}
        return x
    return {k: r(v) for k, v in evidence.items()}


def card(flag: dict, acks: list[dict]) -> dict:
    """An active flag (:func:`storage.flags.active_flags` row) as a card: headline, sentence, numbers, the raw
    evidence (rounded) and the therapists' acknowledgements (``acks``, newest first)."""
    series, side = flag["metric"], flag.get("side") or side_of(flag["metric"])
    c = change(series, flag.get("baseline"), flag.get("current"), flag.get("threshold"))
    d = display(series)
    return {
        "series": series, "kind": flag.get("kind"), "side": side, "direction": flag.get("direction"),
        "metric_label": d.label, "unit": d.unit, "decimals": d.decimals,
        "since_day": flag.get("since_day"), "day": flag.get("day"), "since_text": day_text(flag.get("since_day")),
        "headline": f"{SIDE_WORDS.get(side, SIDE_WORDS[None])}: {change_words(series, flag.get('direction'))}",
        "state_text": "active flag, acknowledged" if acks else "active flag",
        "sentence": sentence(flag), "change": c.__dict__, "change_text": change_text(series, c),
        "compensation_note": compensation_note(series, flag.get("direction")),
        "days_n": flag.get("days_n"),
        "effect_size": None if flag.get("effect_size") is None else round(float(flag["effect_size"]), 2),
        "evidence": rounded_evidence(series, flag.get("evidence") or {}),
        "acknowledged": bool(acks),
        "acknowledgements": [{**a, "time_text": f"{datetime.fromtimestamp(a['time_us'] / 1e6, UTC):%d %b %Y %H:%M} UTC"}
                             for a in acks],
    }
