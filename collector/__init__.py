"""Collector: reads a patient's left and right insoles and publishes their samples over MQTT.

Pipeline: an :class:`~collector.sources.base.InsoleSource` (BLE through bleak, or
a simulated insole) yields :class:`~collector.sources.base.DeviceFrames`; the
:class:`~collector.clock.ClockAligner` maps device time onto the collector's time
base; frames become wire-format batches (``insole_common.codec``) that are
written to the durable :class:`~storage.outbox.Outbox` first and deleted only
when the broker has acknowledged their QoS 1 publish (``collector.publisher``).
"""
