"""heatlens: measure an internal engineering platform as a product — HEAT beside DORA."""

__version__ = "0.1.0"
