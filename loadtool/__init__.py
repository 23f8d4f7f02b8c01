"""Load generator, end-to-end audit and benchmark for the order system (issue 8)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
