"""edgehar: live multimodal activity recognition on edge boards."""

__version__ = "0.1.0"
