"""The ``kinetic`` command line: one entry point for every part of Kinetic Chain."""
