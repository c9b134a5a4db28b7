"""Serving: export the trained user side, item vectors and FAISS indexes; retrieve top-K.

- `export`: a run's checkpoint -> an export directory, checked against the training model.
- `user_side` / `item_side`: the user side (tables, user tower, gate, tau) and the item encoder
  as plain-PyTorch modules; `user_file`: saved with torch.export and loaded without pickle;
  `weights`: whole tables out of a (sharded) state dict; `quantize`: their int8 row-wise twins.
- `index`: the exact and HNSW FAISS indexes, efSearch tuned to a measured recall.
- `manifest`: manifest.json, everything retrieval needs about an export.
- `requests`: user requests (JSON lines or Parquet) -> validated, folded ids;
  `managed_map`: raw ids of managed features -> the rows training gave them.
- `retrieve`: `Retriever` loads an export and returns each user's top-K with scores and gate.
"""
