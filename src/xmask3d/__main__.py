"""``python -m xmask3d`` (also what ``torchrun -m xmask3d train ...`` runs)."""

from __future__ import annotations

import sys

from xmask3d.cli import main

sys.exit(main())
