"""hb: high-availability failover for pairs of GNU/Linux boxes."""

__version__ = "0.1.0"
