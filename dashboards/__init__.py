"""Dashboards (therapist, patient, researcher): not built yet — see the dashboards issue.

They will read the same storage as the processing service (``processing.store``).
"""
