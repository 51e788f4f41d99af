"""User-facing applications on a user's own scan: ``xmask3d segment`` and ``xmask3d query``."""
