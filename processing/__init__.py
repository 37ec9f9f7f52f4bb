"""Processing: gait analytics (``processing.analytics``), file readers and the MQTT processing service."""
