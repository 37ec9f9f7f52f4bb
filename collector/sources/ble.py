"""Insoles over Bluetooth LE, through bleak (any backend: BlueZ, CoreBluetooth, WinRT, or Bumble in tests).

:class:`NotificationDecoder` turns notifications into ordered :class:`~collector.sources.base.DeviceFrames`
for any profile: it unwraps the wrapping counters, drops duplicates, puts slightly re-ordered notifications
back in order, and records every gap in the frame sequence exactly. :class:`BleInsoleSource` finds the paired
insole by address (scan filtered by the profile's service UUID), connects with bleak-retry-connector's
``establish_connection`` (retries with back-off), reads the device info, subscribes, and starts over the
moment the insole disconnects, scanning until it advertises again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError
from bleak_retry_connector import BleakNotFoundError, establish_connection

from collector.errors import InsoleConnectError, InsoleNotFoundError, PacketError, ProfileError
from collector.profiles import PROFILES, DeviceInfo, Packet, Profile, get_profile
from collector.sources.base import DeviceFrames, InsoleSource, SourceStatus
from insole_common.codec import Side

log = logging.getLogger(__name__)

_DISCONNECTED = object()


def nearest_congruent(raw: int, predicted: float, modulus: int) -> int:
    """The integer congruent to ``raw`` modulo ``modulus`` that is closest to ``predicted``."""
    base = round(predicted) - ((round(predicted) - raw) % modulus)
    return base if predicted - base <= modulus / 2 else base + modulus


class NotificationDecoder:
    """Per-insole decoding state: profile bytes -> ordered DeviceFrames, with exact gap accounting.

    ``reorder_depth`` notifications may be held back to put a late one back in
    order; when more are waiting, the oldest is released and the frames before it
    become a recorded gap (a notification arriving after that counts as late).
    """

    def __init__(self, profile: Profile, *, side: Side, device_id: str, status: SourceStatus,
                 info: DeviceInfo | None = None, reorder_depth: int = 3) -> None:
        self.profile = profile
        self.side = side
        self.device_id = device_id
        self.status = status
        self.info = info or profile.default_info()
        self.reorder_depth = reorder_depth
        self._last: tuple[int, int, int] | None = None  # previous packet: unwrapped ticks and counter, arrival_us
        self._expected: int | None = None  # next frame seq to release
        self._held: list[tuple[int, int, DeviceFrames]] = []  # heap of (first_seq, tiebreak, frames)
        self._tiebreak = 0
        self._released_ranges: list[tuple[int, int]] = []  # recent (first, end) released, to tell repeats from late
        self.sample_rate_hz: float | None = None

    def set_info(self, info: DeviceInfo) -> None:
        self.info = info
        if info.battery_pct is not None:
            self.status.battery_pct = info.battery_pct

    def _bad(self, exc: PacketError, size: int) -> None:
        st = self.status
        st.bad_packets_n += 1
        st.bad_packet_reasons[exc.reason] = st.bad_packet_reasons.get(exc.reason, 0) + 1
        log.warning("%s insole %s: dropped a %d-byte notification (%s): %s", self.side, self.device_id, size,
                    exc.reason, exc)

    def _unwrap(self, packet: Packet, arrival_us: int) -> tuple[int, int]:
        """(first frame seq, device time of the first frame in us), both unwrapped."""
        p = self.profile
        last = self._last
        if last is None:
            ticks = packet.device_time_raw
            counter = packet.seq_raw
        else:
            last_ticks, last_counter, last_arrival_us = last
            # the device clock advanced about as much as the collector's clock (BLE jitter << wrap period)
            predicted_ticks = last_ticks + (arrival_us - last_arrival_us) / p.tick_us
            ticks = nearest_congruent(packet.device_time_raw, predicted_ticks, p.time_modulus)
            # the counter advanced by the device time elapsed (exact to a frame), so long gaps unwrap right
            step = p.seq_step_frames or packet.n_frames
            predicted_counter = last_counter + (ticks - last_ticks) * p.tick_us * 1e-6 * packet.sample_rate_hz / step
            counter = nearest_congruent(packet.seq_raw, predicted_counter, p.seq_modulus)
        if last is None or ticks > last[0]:
            self._last = (ticks, counter, arrival_us)
        step = p.seq_step_frames or packet.n_frames
        return counter * step, int(round(ticks * p.tick_us))

    def feed(self, data: bytes | bytearray, arrival_us: int) -> list[DeviceFrames]:
        """Decode one notification; return the frames now ready, in order (maybe none)."""
        try:
            packet = self.profile.decode(data)
        except PacketError as exc:
            self._bad(exc, len(data))
            return []
        first_seq, dev_us = self._unwrap(packet, arrival_us)
        if packet.battery_pct is not None:
            self.status.battery_pct = packet.battery_pct
        self.sample_rate_hz = packet.sample_rate_hz
        info = self.info
        frames = DeviceFrames(
            side=self.side, device_id=self.device_id, first_seq=first_seq, device_time_us=dev_us,
            arrival_time_us=arrival_us, pressure_raw=packet.pressure_raw, sample_rate_hz=packet.sample_rate_hz,
            layout_id=info.layout_id, pressure_unit=info.pressure_unit, pressure_scale=info.pressure_scale,
            pressure_offset=info.pressure_offset, imu_raw=packet.imu_raw,
            acc_scale_g=info.acc_scale_g if packet.imu_raw is not None else 0.0,
            gyro_scale_dps=info.gyro_scale_dps if packet.imu_raw is not None else 0.0,
            battery_pct=self.status.battery_pct,
        )
        if self._expected is None:
            self._expected = first_seq
        end = first_seq + frames.n_frames
        waiting = any(h[0] == first_seq for h in self._held)
        if end <= self._expected or waiting:
            # everything in it was released already (or is waiting): a repeat, or too late
            if waiting or self._is_repeat(first_seq, end):
                self.status.duplicate_packets_n += 1
            else:
                self.status.late_packets_n += 1
                log.info("%s insole: notification for frames %d..%d arrived after they were declared lost",
                         self.side, first_seq, end - 1)
            return []
        if first_seq < self._expected:  # overlaps what was released: keep only the new tail
            cut = self._expected - first_seq
            frames = _slice(frames, cut)
        heapq.heappush(self._held, (frames.first_seq, self._tiebreak, frames))
        self._tiebreak += 1
        return self._release(force=False)

    def _is_repeat(self, first: int, end: int) -> bool:
        return any(a <= first and end <= b for a, b in self._released_ranges)

    def _note_released(self, f: DeviceFrames) -> None:
        ranges = self._released_ranges
        ranges.append((f.first_seq, f.first_seq + f.n_frames))
        if len(ranges) > 64:
            del ranges[:32]

    def _release(self, *, force: bool) -> list[DeviceFrames]:
        out: list[DeviceFrames] = []
        st = self.status
        expected = self._expected  # set by the first feed(), before anything is held
        while self._held:
            seq = self._held[0][0]
            if seq != expected and not force and len(self._held) <= self.reorder_depth:
                break
            _, _, f = heapq.heappop(self._held)
            if expected is not None and f.first_seq > expected:
                missing = f.first_seq - expected
                st.gaps.append((expected, missing))
                st.frames_missing_n += missing
                log.info("%s insole: %d frames missing from seq %d", self.side, missing, expected)
            expected = f.first_seq + f.n_frames
            st.frames_received_n += f.n_frames
            self._note_released(f)
            out.append(f)
        self._expected = expected
        return out

    def flush(self) -> list[DeviceFrames]:
        """Release everything held (the link went down: nothing more will fill the holes)."""
        return self._release(force=True)


def _slice(f: DeviceFrames, start: int) -> DeviceFrames:
    period_us = 1e6 / f.sample_rate_hz
    return DeviceFrames(
        side=f.side, device_id=f.device_id, first_seq=f.first_seq + start,
        device_time_us=f.device_time_us + int(round(start * period_us)), arrival_time_us=f.arrival_time_us,
        pressure_raw=f.pressure_raw[start:], sample_rate_hz=f.sample_rate_hz, layout_id=f.layout_id,
        pressure_unit=f.pressure_unit, pressure_scale=f.pressure_scale, pressure_offset=f.pressure_offset,
        imu_raw=None if f.imu_raw is None else f.imu_raw[start:], acc_scale_g=f.acc_scale_g,
        gyro_scale_dps=f.gyro_scale_dps, battery_pct=f.battery_pct,
    )


@dataclass(frozen=True)
class FoundInsole:
    """An insole seen advertising during a scan."""

    address: str
    name: str | None
    profile: str
    rssi: int


async def scan_insoles(timeout_s: float = 5.0, *, profiles: list[str] | None = None,
                       backend: type[BaseBleakScanner] | None = None) -> list[FoundInsole]:
    """Scan for insoles advertising any known profile's service UUID, strongest signal first."""
    wanted = [get_profile(n) for n in (profiles or list(PROFILES))]
    uuids = [p.service_uuid for p in wanted]
    found: dict[str, FoundInsole] = {}

    def on_adv(device: BLEDevice, adv: AdvertisementData) -> None:
        for p in wanted:
            if p.service_uuid in adv.service_uuids:
                found[device.address] = FoundInsole(device.address, adv.local_name or device.name, p.name, adv.rssi)

    async with BleakScanner(on_adv, service_uuids=uuids, backend=backend):
        await asyncio.sleep(timeout_s)
    return sorted(found.values(), key=lambda f: -f.rssi)


def _scan_args(profile: Profile, backend: type[BaseBleakScanner] | None) -> BleakScanner.ExtraArgs:
    """The scanner arguments of bleak's find_device_* helpers: the profile's service; ``backend`` if given."""
    service: BleakScanner.ExtraArgs = {"service_uuids": [profile.service_uuid]}
    return service if backend is None else {**service, "backend": backend}


async def read_device_info(address: str, profile: Profile, *, scan_timeout_s: float = 10.0,
                           scanner_backend: type[BaseBleakScanner] | None = None,
                           client_backend: type[BaseBleakClient] | None = None) -> DeviceInfo:
    """Connect once and read an insole's info characteristic (used by ``kinetic pair``)."""
    device = await BleakScanner.find_device_by_address(address, timeout=scan_timeout_s,
                                                       **_scan_args(profile, scanner_backend))
    if device is None:
        raise InsoleNotFoundError(address, scan_timeout_s)
    async with BleakClient(device, backend=client_backend) as client:
        if profile.info_char_uuid is None:
            return profile.default_info()
        return profile.decode_info(await client.read_gatt_char(profile.info_char_uuid))


class BleInsoleSource(InsoleSource):
    """One paired insole over BLE. ``frames()`` runs until cancelled, reconnecting on its own.

    ``scanner_backend`` / ``client_backend`` are passed to bleak as ``backend=``
    (None: the platform's own). ``connect_attempts`` is handed to
    bleak-retry-connector, which backs off between attempts; after that the
    source goes back to scanning, so it reconnects as soon as the insole
    advertises again.
    """

    def __init__(
        self,
        *,
        address: str,
        side: Side,
        profile: str | Profile = "kc16",
        device_id: str | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        connect_attempts: int = 4,
        scan_timeout_s: float = 30.0,
        retry_pause_s: float = 0.5,
        reorder_depth: int = 3,
        queue_size: int = 2000,
    ) -> None:
        super().__init__()
        self.address = address.upper()
        self.side = side
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.device_id = device_id or f"{self.profile.name}-{self.address.replace(':', '').lower()}"
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self.connect_attempts = connect_attempts
        self.scan_timeout_s = scan_timeout_s
        self.retry_pause_s = retry_pause_s
        self.decoder = NotificationDecoder(self.profile, side=side, device_id=self.device_id, status=self.status,
                                           reorder_depth=reorder_depth)
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self._client: BleakClient | None = None
        self._closing = False
        self.mtu: int | None = None
        self.connects_n = 0
        #: the id the insole reports about itself (info characteristic), if its profile has one
        self.hardware_id: str | None = None

    @property
    def sample_rate_hz(self) -> float | None:
        return self.decoder.sample_rate_hz

    def _matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        return device.address.upper() == self.address

    def _on_notify(self, _char, data: bytearray) -> None:
        item = (bytes(data), time.time_ns() // 1000)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.status.bad_packets_n += 1
            self.status.bad_packet_reasons["queue_full"] = self.status.bad_packet_reasons.get("queue_full", 0) + 1
            log.error("%s insole: the collector is not keeping up; a notification was dropped", self.side)

    async def _find(self) -> BLEDevice | None:
        return await BleakScanner.find_device_by_filter(
            self._matches, timeout=self.scan_timeout_s, **_scan_args(self.profile, self.scanner_backend),
        )

    async def _connect(self, device: BLEDevice, disconnected: asyncio.Event) -> BleakClient:
        try:
            return await establish_connection(
                BleakClient, device, f"{self.side} insole {self.address}",
                disconnected_callback=lambda _c: disconnected.set(), max_attempts=self.connect_attempts,
                backend=self.client_backend,  # None: the platform's own, as BleakClient's default
            )
        except (TimeoutError, BleakError, BleakNotFoundError) as exc:
            raise InsoleConnectError(f"could not connect to the {self.side} insole {self.address}: {exc}") from exc

    async def _session(self, device: BLEDevice) -> None:
        """One connection: set up, stream until the link drops."""
        disconnected = asyncio.Event()
        client = await self._connect(device, disconnected)
        self._client = client
        try:
            if client.services.get_service(self.profile.service_uuid) is None:
                raise ProfileError(f"{self.address} does not offer the {self.profile.name} service "
                                   f"{self.profile.service_uuid}")
            if (info_uuid := self.profile.info_char_uuid) is not None and client.services.get_characteristic(info_uuid):
                try:
                    info = self.profile.decode_info(await client.read_gatt_char(info_uuid))
                    self.decoder.set_info(info)
                    self.hardware_id = info.device_id
                    if info.side is not None and info.side != self.side:
                        log.error("the insole paired as %s (%s) says it is the %s one; check the pairing",
                                  self.side, self.address, info.side)
                except PacketError as exc:
                    log.warning("%s insole: unreadable device info (%s); using the profile defaults", self.side, exc)
            self.mtu = client.mtu_size
            await client.start_notify(self.profile.data_char_uuid, self._on_notify)
            self.connects_n += 1
            now_us = time.time_ns() // 1000
            if self.status.outages and self.status.outages[-1][1] is None:
                self.status.outages[-1] = (self.status.outages[-1][0], now_us)
            self.status.connected = True
            self._status_changed()
            log.info("%s insole %s connected (ATT MTU %d)", self.side, self.address, self.mtu)
            await disconnected.wait()
        finally:
            if self.status.connected:
                self.status.connected = False
                self.status.outages.append((time.time_ns() // 1000, None))
                self._status_changed()
                if not self._closing:
                    log.warning("%s insole %s disconnected; looking for it again", self.side, self.address)
            self._queue.put_nowait(_DISCONNECTED)
            self._client = None
            if client.is_connected:
                with contextlib.suppress(BleakError):
                    await client.disconnect()

    async def _link_loop(self) -> None:
        while not self._closing:
            device = await self._find()
            if device is None:
                log.warning("the %s insole %s is not advertising (switched off, out of range, or battery empty); "
                            "still looking", self.side, self.address)
                continue
            try:
                await self._session(device)
            except InsoleConnectError as exc:
                log.warning("%s", exc)
                await asyncio.sleep(self.retry_pause_s)
            except ProfileError as exc:
                log.error("%s", exc)
                await asyncio.sleep(5.0)

    async def frames(self) -> AsyncIterator[DeviceFrames]:
        link = asyncio.create_task(self._link_loop(), name=f"ble-link-{self.side}")
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter, link}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    link.result()  # re-raise what ended the link loop
                    return
                item = getter.result()
                if item is _DISCONNECTED:
                    for f in self.decoder.flush():
                        yield f
                    continue
                for f in self.decoder.feed(*item):
                    yield f
        finally:
            self._closing = True
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its own end was re-raised above
                await link

    async def aclose(self) -> None:
        self._closing = True
        client = self._client
        if client is not None and client.is_connected:
            with contextlib.suppress(BleakError):
                await client.disconnect()
        if self.status.connected:
            self.status.connected = False
            self._status_changed()
