"""The Ali-CCP converter: raw sample_skeleton/common_features files -> our Parquet layout
(`convert.convert_aliccp`); parsing, field mapping and column building live in their own modules."""
