"""Readers that turn recordings on disk into :class:`insole_common.recording.Recording`."""
