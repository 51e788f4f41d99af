"""xmask3d: open-vocabulary 3D semantic segmentation of indoor scans (XMask3D, NeurIPS 2024)."""

from __future__ import annotations

__version__ = "0.1.0"
