"""Data layer: scene containers, readers, projection, voxelisation, synthetic scenes."""
