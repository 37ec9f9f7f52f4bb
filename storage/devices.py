"""Device ownership (``devices``): every insole belongs to exactly one patient.

A device is recorded for a patient at pairing or provisioning (:meth:`Devices.assign_device`, ``kinetic
devices assign``) or, when nobody recorded it before, by the first batch stored for it (the processing service,
on the patient's own topic, which the broker's ACL ties to the patient's account). From then on a batch of that
device on any other patient's topic is refused (:class:`DeviceOwnerError`, reason ``foreign_device``): frames
are kept once per ``(device_id, seq)`` across all patients, so without this patient A could publish batches with
patient B's device id ahead of B and have B's frames dropped as duplicates. Only an explicit re-assignment
(``reassign=True``) moves a device to another patient.
"""

from __future__ import annotations

from dataclasses import dataclass

from insole_common.errors import InsoleError
from storage.base import StoreBase


class DeviceOwnerError(InsoleError):
    """A batch names a device that belongs to another patient (or an assignment would move one)."""

    reason = "foreign_device"


class Devices(StoreBase):
    """The store's device ownership (a mixin of :class:`storage.store.Store`)."""

    def device_owner(self, device_id: str) -> str | None:
        """The patient the device belongs to (None: not recorded)."""
        rows = self._rows("SELECT patient FROM devices WHERE device_id = ?", (device_id,))
        return str(rows[0][0]) if rows else None

    def patient_devices(self, patient: str) -> list[DeviceRow]:
        """The patient's devices."""
        return [DeviceRow(str(d), str(p), str(s)) for d, p, s in self._rows(
            "SELECT device_id, patient, side FROM devices WHERE patient = ? ORDER BY side, device_id", (patient,))]

    def assign_device(self, device_id: str, patient: str, side: str, *, time_us: int, layout_id: int = 0,
                      reassign: bool = False) -> None:
        """Record that ``device_id`` (worn on ``side``) belongs to ``patient``. Raises :class:`DeviceOwnerError`
        when it belongs to another patient, unless ``reassign`` (an explicit re-assignment)."""
        if side not in ("L", "R"):
            raise ValueError(f"side must be 'L' or 'R', got {side!r}")
        with self._tx() as ex:
            self._ensure_patient(ex, patient, time_us)
            row = ex("SELECT patient FROM devices WHERE device_id = ?", (device_id,)).fetchone()
            if row is None:
                ex("INSERT INTO devices (device_id, patient, side, layout_id, first_seen_us) VALUES (?, ?, ?, ?, ?)",
                   (device_id, patient, side, layout_id, time_us))
            elif row[0] != patient:
                if not reassign:
                    raise DeviceOwnerError(f"device {device_id!r} belongs to another patient; re-assign it explicitly")
                ex("UPDATE devices SET patient = ?, side = ? WHERE device_id = ?", (patient, side, device_id))
            else:
                ex("UPDATE devices SET side = ? WHERE device_id = ?", (side, device_id))
            self._known_devices.pop(device_id, None)

    def _claim_device(self, ex, device_id: str, patient: str, side: str, layout_id: int, time_us: int) -> None:
        """In the caller's transaction: the device belongs to ``patient`` (recorded now if it was not recorded);
        raises :class:`DeviceOwnerError` when it belongs to someone else."""
        if self._known_devices.get(device_id) == patient:
            return
        row = ex("SELECT patient FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        if row is None:  # first use: recorded in this (possibly rolled back) transaction, so not cached yet
            self._ensure_patient(ex, patient, time_us)
            ex("INSERT INTO devices (device_id, patient, side, layout_id, first_seen_us) VALUES (?, ?, ?, ?, ?)",
               (device_id, patient, side, layout_id, time_us))
            return
        if row[0] != patient:
            raise DeviceOwnerError(f"device {device_id!r} belongs to another patient, not to {patient!r}")
        self._known_devices[device_id] = patient


@dataclass(frozen=True)
class DeviceRow:
    """One row of ``devices`` (:meth:`Devices.patient_devices`)."""

    device_id: str
    patient: str
    side: str
