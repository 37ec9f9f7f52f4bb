"""A bleak backend on Bumble's host, over an in-process virtual link (no radio, no kernel).

bleak's ``BleakScanner`` and ``BleakClient`` are facades over a backend class
chosen per platform or injected with ``backend=``. Here the backend drives a
Bumble ``Device`` (host + virtual ``Controller``) attached to a ``LocalLink``;
emulated insoles attach their own controllers to the same link. Everything the
collector does - scan with a service filter, connect, exchange the ATT MTU,
discover GATT, read, write, subscribe, receive notifications, be told of a
disconnection - goes through bleak's public API and Bumble's real HCI, L2CAP,
ATT and GATT code.

Usage::

    link = BumbleLink()
    await EmulatedInsole(link, address="F0:00:00:00:00:01", ...).start()
    device = await BleakScanner.find_device_by_address("F0:00:00:00:00:01", backend=link.scanner_backend)
    async with BleakClient(device, backend=link.client_backend) as client:
        ...

Everything must run on one asyncio event loop (Bumble's link schedules with
``call_soon``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bleak.uuids import normalize_uuid_str
from bumble import core
from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

#: what the collector's "adapter" asks for; BlueZ and CoreBluetooth negotiate similar values
DEFAULT_REQUESTED_MTU = 247

_UUID_LIST_TYPES = (
    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)


def bleak_uuid(uuid: core.UUID) -> str:
    return normalize_uuid_str(uuid.to_hex_str("-"))


def advertisement_data(adv: Advertisement) -> AdvertisementData:
    """Bumble advertisement -> bleak AdvertisementData."""
    data = adv.data
    uuids: list[str] = []
    for t in _UUID_LIST_TYPES:
        for lst in data.get_all(t):
            uuids.extend(bleak_uuid(u) for u in cast("list[core.UUID]", lst))  # the UUID list types hold lists
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
    manufacturer: dict[int, bytes] = {}
    for company_id, payload in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA):
        manufacturer[company_id] = bytes(payload)
    tx = data.get(AdvertisingData.TX_POWER_LEVEL)
    return AdvertisementData(
        local_name=name if isinstance(name, str) else None,
        manufacturer_data=manufacturer,
        service_data={},
        service_uuids=uuids,
        tx_power=tx if isinstance(tx, int) else None,
        rssi=adv.rssi if adv.rssi != Advertisement.RSSI_NOT_AVAILABLE else -60,
        platform_data=(adv,),
    )


class BumbleLink:
    """One virtual radio environment: a shared LocalLink and the collector's central (its "adapter")."""

    def __init__(self, *, central_address: str = "C0:11:EC:70:00:01",
                 requested_mtu: int = DEFAULT_REQUESTED_MTU) -> None:
        self.link = LocalLink()
        self.central_address = central_address
        self.requested_mtu = requested_mtu
        self._central: Device | None = None
        self._central_ready: asyncio.Future | None = None
        self._scanners = 0
        self.connect_lock: asyncio.Lock | None = None
        #: address string -> Bumble Address (with its type) as last seen advertising
        self.known_addresses: dict[str, Address] = {}
        link = self

        class _Scanner(BumbleBleakScanner):
            bumble_link = link

        class _Client(BumbleBleakClient):
            bumble_link = link

        _Scanner.__name__ = "BumbleBleakScanner"
        _Client.__name__ = "BumbleBleakClient"
        self.scanner_backend: type[BaseBleakScanner] = _Scanner
        self.client_backend: type[BaseBleakClient] = _Client

    def new_controller(self, name: str, address: str) -> Controller:
        return Controller(name, link=self.link, public_address=address)

    def new_device(self, name: str, address: str) -> Device:
        """A Bumble Device (host + virtual controller) attached to this link."""
        controller = self.new_controller(name, address)
        return Device(name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller)))

    async def central(self) -> Device:
        """The collector-side Bumble device, powered on once."""
        if self._central_ready is None:
            self._central_ready = asyncio.get_running_loop().create_future()
            self.connect_lock = asyncio.Lock()
            device = self.new_device("collector", self.central_address)
            device.on(device.EVENT_ADVERTISEMENT, self._on_advertisement)
            await device.power_on()
            self._central = device
            self._central_ready.set_result(device)
        return await asyncio.shield(self._central_ready)

    # advertisements are fanned out to every running scanner backend
    _listeners: list[Callable[[Advertisement], None]]

    def _on_advertisement(self, adv: Advertisement) -> None:
        self.known_addresses[adv.address.to_string(False)] = adv.address
        for listener in list(getattr(self, "_listeners", [])):
            listener(adv)

    async def scan_acquire(self, listener: Callable[[Advertisement], None]) -> None:
        central = await self.central()
        if not hasattr(self, "_listeners"):
            self._listeners = []
        self._listeners.append(listener)
        self._scanners += 1
        if self._scanners == 1:
            await central.start_scanning(active=False, filter_duplicates=False, scan_interval=60, scan_window=60)

    async def scan_release(self, listener: Callable[[Advertisement], None]) -> None:
        if listener in getattr(self, "_listeners", []):
            self._listeners.remove(listener)
            self._scanners -= 1
            if self._scanners == 0 and self._central is not None:
                await self._central.stop_scanning()

    def address_of(self, address: str) -> Address:
        return self.known_addresses.get(address.upper(), Address(address.upper(), Address.RANDOM_DEVICE_ADDRESS))


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend on a :class:`BumbleLink` (bind one with ``link.scanner_backend``)."""

    bumble_link: BumbleLink

    def __init__(self, detection_callback, service_uuids, scanning_mode="active", **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._running = False

    def _on_adv(self, adv: Advertisement) -> None:
        data = advertisement_data(adv)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = adv.address.to_string(False)
        device = self.create_or_update_device(address, address, data.local_name, {"bumble_address": adv.address}, data)
        self.call_detection_callbacks(device, data)

    async def start(self) -> None:
        self.seen_devices = {}
        if not self._running:
            self._running = True
            await self.bumble_link.scan_acquire(self._on_adv)

    async def stop(self) -> None:
        if self._running:
            self._running = False
            await self.bumble_link.scan_release(self._on_adv)


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend on a :class:`BumbleLink` (bind one with ``link.client_backend``)."""

    bumble_link: BumbleLink

    def __init__(self, address_or_ble_device: BLEDevice | str, *, disconnected_callback=None, timeout: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._bumble_address: Address | None = None
        if isinstance(address_or_ble_device, BLEDevice) and isinstance(address_or_ble_device.details, dict):
            self._bumble_address = address_or_ble_device.details.get("bumble_address")
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        link = self.bumble_link
        central = await link.central()
        address = self._bumble_address or link.address_of(self.address)
        timeout_s = float(kwargs.get("timeout", self._timeout))
        assert link.connect_lock is not None
        async with link.connect_lock:  # one pending LE connection at a time, like a real controller
            try:
                connection = await central.connect(address, timeout=timeout_s)
            except core.TimeoutError as exc:
                raise TimeoutError(f"no connection to {self.address} within {timeout_s:.1f} s") from exc
            except core.ConnectionError as exc:
                raise BleakDeviceNotFoundError(self.address, f"connecting to {self.address} failed: {exc}") from exc
            except core.BaseBumbleError as exc:
                raise BleakError(f"connecting to {self.address} failed: {exc}") from exc
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            peer = Peer(connection)
            await peer.request_mtu(link.requested_mtu)
            await peer.discover_all()
            self._peer = peer
            self.services = self._build_services(peer)
        except BaseException as exc:
            await self.disconnect()
            if isinstance(exc, (core.BaseBumbleError, asyncio.TimeoutError)):
                raise BleakError(f"GATT setup with {self.address} failed: {exc}") from exc
            raise

    def _build_services(self, peer: Peer) -> BleakGATTServiceCollection:
        services = BleakGATTServiceCollection()
        for svc in peer.services:
            bs = BleakGATTService(svc, svc.handle, bleak_uuid(svc.uuid))
            services.add_service(bs)
            for char in svc.characteristics:
                props = cast("list[CharacteristicPropertyName]",  # bumble's flag names, lower case, are bleak's
                             [str(p.name).lower() for p in type(char.properties) if p in char.properties and p.name])
                bc = BleakGATTCharacteristic(char, char.handle, bleak_uuid(char.uuid), props,
                                             lambda: self.mtu_size - 3, bs)
                services.add_characteristic(bc)  # also adds it to its service
                for desc in char.descriptors:
                    bd = BleakGATTDescriptor(desc, desc.handle, bleak_uuid(desc.type), bc)
                    services.add_descriptor(bd)  # also adds it to its characteristic
        return services

    def _on_disconnection(self, reason: int) -> None:
        was = self._connection is not None
        self._connection = None
        self._peer = None
        if was and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection, self._disconnected_callback_saved = self._connection, self._disconnected_callback
        if connection is None:
            return
        self._disconnected_callback = None  # solicited: bleak does not call the callback
        try:
            await connection.disconnect()
        except core.BaseBumbleError as exc:
            log.debug("disconnect from %s: %s", self.address, exc)
        finally:
            self._connection = None
            self._peer = None
            self._disconnected_callback = self._disconnected_callback_saved

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        log.info("pairing (bonding) is not used by the insole profiles; ignored")

    async def unpair(self) -> None:
        log.info("unpairing is not used by the insole profiles; ignored")

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError(f"not connected to {self.address}")
        return self._peer

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs) -> bytearray:
        self._require_peer()
        return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs) -> bytearray:
        self._require_peer()
        return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data, response: bool) -> None:
        self._require_peer()
        await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data) -> None:
        self._require_peer()
        await descriptor.obj.write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        peer = self._require_peer()

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscriptions[characteristic.handle] = on_value
        await peer.subscribe(characteristic.obj, on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        handler = self._subscriptions.pop(characteristic.handle, None)
        await peer.unsubscribe(characteristic.obj, handler)
