"""Model components of xmask3d (3D backbones, 2D mask branch, text side, fusion)."""
