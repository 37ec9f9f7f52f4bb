"""Device profiles: pluggable decoders from BLE notification bytes to frames.

``PROFILES`` maps a profile name (config files, ``--profile``) to an instance.
Add a profile by subclassing :class:`~collector.profiles.base.Profile`.
"""

from __future__ import annotations

from collector.errors import ProfileError
from collector.profiles.base import DeviceInfo, Packet, Profile
from collector.profiles.kc_open import KcOpenProfile
from collector.profiles.orphe import OrpheInsoleProfile

PROFILES: dict[str, Profile] = {p.name: p for p in (KcOpenProfile(), OrpheInsoleProfile())}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"unknown insole profile {name!r}; known: {sorted(PROFILES)}") from None


def profile_for_service(service_uuids: list[str] | tuple[str, ...]) -> Profile | None:
    """The profile whose service UUID an advertisement lists, if any."""
    lowered = {u.lower() for u in service_uuids}
    for profile in PROFILES.values():
        if profile.service_uuid in lowered:
            return profile
    return None


__all__ = ["PROFILES", "DeviceInfo", "Packet", "Profile", "get_profile", "profile_for_service"]
