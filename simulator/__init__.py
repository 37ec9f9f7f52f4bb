"""Simulator of physiologically plausible bilateral insole data with ground truth (docs/simulator.md).

::

    from simulator import simulate, SimulationParams
    sim = simulate(SimulationParams(duration_s=120, lateral_shift_fw=0.05), seed=0)
    sim.recording      # insole_common.recording.Recording (kPa, NaN rows = lost samples)
    sim.truth.events   # one row per stride: exact heel strike / toe-off, stride length, ML COP ...
"""

from simulator.params import SimulationParams
from simulator.simulation import DeviceClock, GroundTruth, Simulation, simulate

__all__ = ["DeviceClock", "GroundTruth", "Simulation", "SimulationParams", "simulate"]
