"""From 2D masks to 3D points: sampling, disjoint final masks, feature fusion, base/novel routing."""
