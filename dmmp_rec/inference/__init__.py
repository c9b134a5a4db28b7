"""What training's validation, evaluation and export all compute from a model, so it sits above
`distributed` and below train, eval and serving (none of which may import another): the student's
query and item vectors of whole catalogues, each rank encoding its share (`catalogue_vectors`),
the per-impression labels and scores of a labelled split (`split_scores`), and the exact FAISS
inner-product index the retrieval metrics and the served index both search (`item_index`).
"""
