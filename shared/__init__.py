"""traccar-bridge's library: everything the four functions share (see README, "Layout")."""

__version__ = "0.1.0"
