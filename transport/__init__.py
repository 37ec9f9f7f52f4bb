"""Infrastructure: the one MQTT transport every side uses (paho-mqtt underneath)."""
