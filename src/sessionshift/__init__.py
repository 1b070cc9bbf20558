"""sessionshift: move Flask server-side sessions from files to Redis in phases, losing none."""

__version__ = "0.1.0"
