"""2D mask branch: 3D-conditioned diffusion features, pixel decoder and mask decoder."""
