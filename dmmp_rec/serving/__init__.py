"""Serving: export the trained user side, item vectors and FAISS indexes; retrieve top-K."""
