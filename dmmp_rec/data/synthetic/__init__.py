"""The seeded synthetic world: hidden entities, ground truth (`world`), logged impressions and
the features written to Parquet; `generate.generate_world` writes it to disk."""
