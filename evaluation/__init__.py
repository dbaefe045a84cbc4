"""Sample-quality evaluation: feature extractors (Inception, project classifier) and distances between feature sets."""
