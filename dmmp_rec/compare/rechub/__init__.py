"""The torch-rechub 0.9.0 peers of the comparison: models, recipes, training and evaluation,
kept apart from our own models so the peer library stays an optional dependency."""
