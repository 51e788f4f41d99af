"""``xmask3d view``: a browser viewer built on viser (features, display state, server, CLI)."""
