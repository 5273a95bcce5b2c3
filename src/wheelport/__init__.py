"""wheelport: build offline wheelhouses for many Python targets."""

from __future__ import annotations

__version__ = "0.1.0"
