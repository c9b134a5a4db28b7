"""Data: the on-disk layout (`schema`), the synthetic world (`synthetic/`) and the Ali-CCP converter
(`aliccp/`) that write it, the id mapping (`id_policy`), and the Parquet loader (`loader`, with its
order, row groups, KJT building and optional background `prefetch`) that yields `batch.Batch`es;
`catalogue` and `pair_features` serve evaluation and the in-batch candidates.
"""
