"""An emulated insole: a Bumble GATT server that streams the exact bytes of a device profile.

It samples on its own (drifting) clock whether or not anyone listens, packs
frames into notifications sized to the negotiated ATT MTU, and sends them at
BLE connection events. It keeps the ground truth a test needs: every frame's
true sample time on the collector's clock, what was sent, what was lost on
purpose, and when it disappeared and came back.

Faults (``Faults``) act on the n-th notification (counted from 0 while someone
is subscribed): drop, duplicate, reorder (send after the next one), truncate,
corrupt. ``go_away(seconds)`` disconnects and stops advertising; the device
keeps sampling, so the frames of that interval are the exact gap to expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, Service

from collector.emulation.bumble_backend import BumbleLink
from collector.emulation.signals import synthetic_imu, synthetic_pressure
from collector.profiles import kc_open, orphe
from collector.profiles.base import DeviceInfo
from insole_common.codec import PressureUnit, Side

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Which notifications to spoil, by index (0 = the first one sent to a subscriber)."""

    drop_at: set[int] = field(default_factory=set)
    duplicate_at: set[int] = field(default_factory=set)
    reorder_at: set[int] = field(default_factory=set)
    truncate_at: set[int] = field(default_factory=set)
    corrupt_at: set[int] = field(default_factory=set)


@dataclass
class SentNotification:
    index: int
    first_seq: int  # unwrapped frame sequence number of frame 0
    n_frames: int
    fault: str | None  # None, "drop", "duplicate", "reorder", "truncate", "corrupt"
    sent_wall_us: int


class EmulatedInsole:
    """One insole on a :class:`BumbleLink`. Call ``await start()``; it streams until ``await stop()``."""

    def __init__(
        self,
        link: BumbleLink,
        *,
        address: str,
        side: Side = "L",
        profile: str = "kc16",
        sample_rate_hz: float = 100.0,
        drift_ppm: float = 0.0,
        device_id: str | None = None,
        with_imu: bool = True,
        battery_pct: int = 87,
        seq_start: int = 0,
        device_time_start_us: int = 5_000_000,
        connection_interval_s: float = 0.015,
        faults: Faults | None = None,
        max_frames_per_notification: int = 10,
        sent_log_path: str | None = None,
        event_skip_p: float = 0.0,
        seed: int = 0,
    ) -> None:
        if profile not in ("kc16", "orphe"):
            raise ValueError(f"unknown profile {profile!r}")
        if profile == "orphe" and sample_rate_hz not in (100.0, 200.0):
            raise ValueError("ORPHE INSOLE streams pressure at 100 Hz (header 56) or 200 Hz (header 55)")
        self.link = link
        self.address = address.upper()
        self.side = side
        self.profile = profile
        self.sample_rate_hz = float(sample_rate_hz)
        self.drift_ppm = drift_ppm
        self.device_id = device_id or f"emu-{profile}-{side}-{self.address[-5:].replace(':', '')}"
        self.with_imu = with_imu
        self.battery_pct = battery_pct
        self.seq_start = seq_start
        self.device_time_start_us = device_time_start_us
        self.connection_interval_s = connection_interval_s
        self.faults = faults or Faults()
        self.max_frames_per_notification = max_frames_per_notification
        #: probability that a connection event carries nothing (interference, retransmission): latency jitter
        self.event_skip_p = event_skip_p
        self._rng = np.random.default_rng(seed)
        self._notifying: set[asyncio.Future] = set()
        #: JSON lines, one per notification handed to the link (for tests across processes)
        self._sent_log = (open(sent_log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open, line-buffered, for the insole's life
                          if sent_log_path else None)
        self.n_channels = 16 if profile == "kc16" else orphe.N_CHANNELS
        self.orphe_header = 55 if sample_rate_hz == 200.0 else 56
        # ground truth
        self.sent: list[SentNotification] = []
        self.frames_generated_n = 0
        self.disappeared_wall_us: list[int] = []
        self.reappeared_wall_us: list[int] = []
        self.negotiated_mtu: int | None = None
        self.frames_per_notification: int | None = None
        # runtime
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._subscribed = False
        self._data_char: Characteristic | None = None
        self._task: asyncio.Task | None = None
        self._held: tuple[bytes, SentNotification] | None = None
        self._notif_index = 0
        self._t0_wall_us: int | None = None
        self._t0_mono: float | None = None
        self._next_frame = 0  # frames since start, not yet packed
        self._advertising = False

    # --- clocks ----------------------------------------------------------------------------
    @property
    def true_period_s(self) -> float:
        """Sample period in true (collector) seconds: the device's crystal runs (1 + drift) fast."""
        return 1.0 / (self.sample_rate_hz * (1 + self.drift_ppm * 1e-6))

    def true_time_us(self, k: np.ndarray | int) -> np.ndarray | int:
        """Collector wall-clock time (us) at which frame k (counted from start) was sampled."""
        assert self._t0_wall_us is not None
        return self._t0_wall_us + np.round(np.asarray(k, dtype=np.float64) * self.true_period_s * 1e6).astype(np.int64)

    def device_time_us(self, k: int) -> int:
        return self.device_time_start_us + int(round(k * 1e6 / self.sample_rate_hz))

    def seq_of(self, k: int) -> int:
        """Unwrapped sequence number the collector should give frame k."""
        return self.seq_start + k

    # --- GATT ----------------------------------------------------------------------------------
    def _info_value(self) -> bytes:
        if self.profile == "kc16":
            return kc_open.encode_info(DeviceInfo(
                device_id=self.device_id, side=self.side, layout_id=1, pressure_unit=PressureUnit.KPA,
                pressure_scale=0.1, acc_scale_g=1 / 4096, gyro_scale_dps=0.07, sample_rate_hz=self.sample_rate_hz))
        return orphe.encode_info(battery_pct=self.battery_pct, right=self.side == "R")

    def _services(self) -> list[Service]:
        notify = Characteristic.Properties.NOTIFY
        read = Characteristic.Properties.READ
        if self.profile == "kc16":
            self._data_char = Characteristic(kc_open.DATA_CHAR_UUID, notify, Characteristic.READABLE, b"")
            info = Characteristic(kc_open.INFO_CHAR_UUID, read, Characteristic.READABLE, self._info_value())
            services = [Service(kc_open.SERVICE_UUID, [self._data_char, info])]
        else:
            self._data_char = Characteristic(orphe.DATA_CHAR_UUID, notify, Characteristic.READABLE, b"")
            info = Characteristic(orphe.INFO_CHAR_UUID, read | Characteristic.Properties.WRITE,
                                  Characteristic.READABLE | Characteristic.WRITEABLE, self._info_value())
            services = [Service(orphe.SERVICE_UUID, [self._data_char]), Service(orphe.INFO_SERVICE_UUID, [info])]
        self._data_char.on(self._data_char.EVENT_SUBSCRIPTION, self._on_subscription)
        return services

    def _advertising_data(self) -> bytes:
        service = kc_open.SERVICE_UUID if self.profile == "kc16" else orphe.SERVICE_UUID
        name = f"{'KC' if self.profile == 'kc16' else 'INS'}-{self.side}"
        return bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, bytes(UUID(service))),
            (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
        ]))

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)

    def _on_disconnection(self, _reason: int) -> None:
        self._connection = None
        self._subscribed = False
        self._flush_held(send=False)

    def _on_subscription(self, _bearer, notify_enabled: bool, _indicate: bool) -> None:
        self._subscribed = notify_enabled
        if notify_enabled and self._connection is not None:
            self.negotiated_mtu = self._connection.att_mtu
            self.frames_per_notification = self._fit_frames(self.negotiated_mtu)

    def _fit_frames(self, mtu: int) -> int:
        if self.profile == "orphe":
            if mtu - 3 < orphe.PACKET_SIZE:
                log.error("ATT MTU %d is too small for 104-byte ORPHE notifications", mtu)
                return 0
            return orphe.MODES[self.orphe_header][0]
        n = kc_open.frames_per_notification(mtu, self.n_channels, self.with_imu)
        return min(n, self.max_frames_per_notification)

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        device = self.link.new_device(f"insole-{self.side}", self.address)
        device.add_services(self._services())
        device.on(device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        self._device = device
        await self.start_advertising()
        self._t0_wall_us = time.time_ns() // 1000
        self._t0_mono = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"emulated-insole-{self.side}")

    async def start_advertising(self) -> None:
        assert self._device is not None
        await self._device.start_advertising(advertising_data=self._advertising_data(), auto_restart=True,
                                             advertising_interval_min=20, advertising_interval_max=20)
        self._advertising = True

    async def stop_advertising(self) -> None:
        if self._device is not None and self._advertising:
            await self._device.stop_advertising()
            self._advertising = False

    async def disconnect(self) -> None:
        """Drop the link from the insole's side (as when it walks out of range)."""
        if self._connection is not None:
            await self._connection.disconnect()

    async def go_away(self, duration_s: float) -> None:
        """Disconnect and stop advertising for ``duration_s``, then advertise again."""
        await self.stop_advertising()
        self.disappeared_wall_us.append(time.time_ns() // 1000)
        await self.disconnect()
        await asyncio.sleep(duration_s)
        self.reappeared_wall_us.append(time.time_ns() // 1000)
        await self.start_advertising()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.stop_advertising()
        await self.disconnect()
        if self._device is not None:
            await self._device.power_off()

    # --- streaming ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._t0_mono is not None
        while True:
            await asyncio.sleep(self.connection_interval_s)
            elapsed_s = time.monotonic() - self._t0_mono
            due = int(elapsed_s / self.true_period_s) + 1  # frames sampled so far
            self.frames_generated_n = due
            fpn = self.frames_per_notification or 1
            if not (self._subscribed and self._connection is not None and fpn > 0):
                self._next_frame = due  # nobody listening: these frames are lost
                if self.profile == "orphe":  # its serial counts packets: keep packets on whole-packet boundaries
                    n = orphe.MODES[self.orphe_header][0]
                    self._next_frame -= (self.seq_start + due) % n
                continue
            if self.event_skip_p and self._rng.random() < self.event_skip_p:
                continue
            while due - self._next_frame >= fpn:
                k0 = self._next_frame
                self._next_frame += fpn
                await self._send(k0, fpn)

    def packet(self, k0: int, n: int) -> bytes:
        """The exact notification bytes for frames k0..k0+n-1."""
        seqs = np.arange(self.seq_start + k0, self.seq_start + k0 + n, dtype=np.int64)
        pressure = synthetic_pressure(seqs, self.sample_rate_hz, self.n_channels, self.side)
        imu = synthetic_imu(seqs, self.sample_rate_hz)
        if self.profile == "kc16":
            return kc_open.encode_packet(int(seqs[0]), self.device_time_us(k0), pressure,
                                         sample_rate_hz=int(self.sample_rate_hz),
                                         imu_raw=imu if self.with_imu else None, battery_pct=self.battery_pct)
        serial = int(seqs[0]) // n
        ms = self.device_time_us(k0) // 1000
        return orphe.encode_packet(self.orphe_header, serial, ms, pressure, imu)

    async def _notify(self, payload: bytes) -> None:
        if self._device is None or self._connection is None or self._data_char is None:
            return
        try:
            await self._device.notify_subscribers(self._data_char, payload)
        except Exception as exc:  # noqa: BLE001 - the link went away between the check and the send
            log.debug("notification not sent: %s", exc)

    async def _send(self, k0: int, n: int) -> None:
        idx = self._notif_index
        self._notif_index += 1
        payload = self.packet(k0, n)
        f = self.faults
        fault = None
        if idx in f.drop_at:
            fault = "drop"
        elif idx in f.truncate_at:
            fault, payload = "truncate", payload[: len(payload) // 2]
        elif idx in f.corrupt_at:
            fault = "corrupt"
            buf = bytearray(payload)
            if self.profile == "kc16":
                buf[len(buf) // 2] ^= 0x5A  # a pressure byte: only the CRC can tell
            else:
                buf[0] = 0x99  # ORPHE has no checksum; only a broken header is detectable
            payload = bytes(buf)
        elif idx in f.duplicate_at:
            fault = "duplicate"
        elif idx in f.reorder_at:
            fault = "reorder"
        record = SentNotification(idx, self.seq_of(k0), n, fault, time.time_ns() // 1000)
        self.sent.append(record)
        if self._sent_log is not None:
            self._sent_log.write(json.dumps({"side": self.side, "device_id": self.device_id, "seq": record.first_seq,
                                             "n": n, "fault": fault, "sent_us": record.sent_wall_us}) + "\n")
        if fault == "drop":
            return
        if fault == "reorder":
            self._held = (payload, record)
            return
        await self._notify(payload)
        if fault == "duplicate":
            await self._notify(payload)
        self._flush_held(send=True)

    def _flush_held(self, *, send: bool) -> None:
        if self._held is not None:
            payload, _ = self._held
            self._held = None
            if send:
                task = asyncio.ensure_future(self._notify(payload))
                self._notifying.add(task)  # a reference until done: the event loop keeps only a weak one
                task.add_done_callback(self._notifying.discard)

    # --- ground truth for tests -----------------------------------------------------------------------
    def expected_received_seqs(self) -> list[int]:
        """Frames sent intact (any order, duplicates once)."""
        out: set[int] = set()
        for s in self.sent:
            if s.fault in (None, "duplicate", "reorder"):
                out.update(range(s.first_seq, s.first_seq + s.n_frames))
        return sorted(out)
