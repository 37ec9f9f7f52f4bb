"""Topic tree, JSON messages and sensor layouts of the v1 contract."""

from __future__ import annotations

import numpy as np
import pytest

from insole_common import layouts, messages, topics
from insole_common.errors import ControlMessageError, TopicError, ValidationError

pytestmark = pytest.mark.usefixtures("default_topic_root")  # the contract's own topics, kc/v1


def test_topics_round_trip_and_partition() -> None:
    t = topics.raw_topic("p-7f3a", "L")
    info = topics.parse_topic(t)
    assert info.patient == "p-7f3a" and info.kind == "raw" and info.sub == "L"
    assert t == f"kc/v1/{topics.partition_of('p-7f3a'):02d}/p-7f3a/raw/L"
    for build, kind, sub in [
        (topics.session_topic, "session", None),
        (topics.collector_status_topic, "status", "collector"),
        (topics.strides_topic, "strides", None),
        (topics.flags_topic, "flags", None),
        (topics.control_topic, "control", None),
    ]:
        info = topics.parse_topic(build("p-7f3a"))
        assert (info.kind, info.sub) == (kind, sub)
    assert topics.parse_topic(topics.insole_status_topic("p-7f3a", "R")).sub == "R"


def test_partitions_spread_and_assignment_covers_all() -> None:
    parts = {topics.partition_of(f"p{i}") for i in range(200)}
    assert len(parts) == topics.N_PARTITIONS
    a, b = topics.partitions_for_worker(0, 2), topics.partitions_for_worker(1, 2)
    assert sorted(a + b) == list(range(topics.N_PARTITIONS)) and not set(a) & set(b)
    assert topics.partition_filters("raw/+", [3]) == ["kc/v1/03/+/raw/+"]


@pytest.mark.parametrize(
    "bad",
    ["kc/v2/00/p/raw/L", "kc/v1/xx/p/raw/L", "kc/v1/00/p/raw/X", "kc/v1/00/a+b/raw/L", "kc/v1/00/p/strides/L", "other"],
)
def test_bad_topics(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse_topic(bad)


def test_wrong_partition_for_patient_is_rejected() -> None:
    good = topics.raw_topic("alice-pseudo", "L")
    pp = int(good.split("/")[2])
    wrong = good.replace(f"/{pp:02d}/", f"/{(pp + 1) % topics.N_PARTITIONS:02d}/")
    with pytest.raises(TopicError, match="belongs to partition"):
        topics.parse_topic(wrong)


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "#", "x" * 65, "é"])
def test_bad_pseudonyms(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.check_patient(bad)


def test_messages_round_trip() -> None:
    msgs = [
        messages.SessionMessage(event="start", session_id="s-1", patient="p1", time_us=1, devices={"L": "a", "R": "b"}),
        messages.CollectorStatus(online=False),
        messages.InsoleStatus(side="R", connected=True, time_us=5, battery_pct=80, loss_fraction=0.01),
        messages.CommandMessage(command="stop_session"),
    ]
    for m in msgs:
        assert messages.parse_message(m.to_json()) == m


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "bad_json"),
        (b"[1]", "bad_json"),
        (b'{"v": 9, "type": "session"}', "bad_version"),
        (b'{"v": 1, "type": "nope"}', "invalid_message"),
        (b'{"v": 1, "type": "insole_status", "side": "L", "connected": true, "time_us": 1, "battery_pct": 140}',
         "invalid_message"),
        (b'{"v": 1, "type": "collector_status", "online": true, "extra": 1}', "invalid_message"),
        (b'{"v": 1, "type": "insole_status", "side": "L", "connected": true, "time_us": 1, "loss_fraction": NaN}',
         "invalid_message"),
    ],
)
def test_bad_messages(payload: bytes, reason: str) -> None:
    with pytest.raises(ControlMessageError) as err:
        messages.parse_message(payload)
    assert err.value.reason == reason


def test_layouts_lateral_is_positive_and_regions_cover() -> None:
    for layout in layouts.LAYOUTS.values():
        assert layouts.get_layout(layout.wire_id) is layout
        covered = sum(layout.region_mask(r).sum() for r in layouts.REGIONS)
        assert covered == layout.n_channels
        assert layout.lateral_mask.any() and layout.medial_mask.any()
    # gaitpdb: |X| = 700 is the outer column -> lateral (positive) on both feet
    g = layouts.GAITPDB8
    lateral = [g.channels[i] for i in np.flatnonzero(g.lateral_mask)]
    assert lateral == ["s2", "s4", "s6"]


def test_cop_moves_with_load() -> None:
    lay = layouts.KC16
    heel_only = lay.region_mask("heel").astype(float)[None, :]
    lateral_only = lay.lateral_mask.astype(float)[None, :]
    ap, _ = layouts.centre_of_pressure(lay, heel_only)
    _, ml = layouts.centre_of_pressure(lay, lateral_only)
    assert ap[0] < 0.2 and ml[0] > 0.1
    ap, ml = layouts.centre_of_pressure(lay, np.zeros((1, 16)))
    assert np.isnan(ap[0]) and np.isnan(ml[0])
    with pytest.raises(ValidationError):
        layouts.centre_of_pressure(lay, np.zeros((3, 8)))
    with pytest.raises(ValidationError):
        layouts.get_layout("nope")


def test_non_ascii_partition_digits_are_a_topic_error() -> None:
    with pytest.raises(TopicError):
        topics.parse_topic("kc/v1/²³/p/raw/L")
