"""Running DMMP on a process group: the group itself (`env`, `cuda_probe`), the sharding plan
(`planning/`, `model_parallel`) and the sharded model (`runtime`), optimisers (`optim`), DCP
checkpoints (`checkpoint`), small collectives (`collectives`), and scoring or encoding a split or
catalogue rank by rank (`scores`, `encode`).
"""
