"""Running DMMP on a process group: the group itself (`env`, `cuda_probe`), the sharding plan
(`planning/`, `model_parallel`) and the sharded model (`runtime`), optimisers (`optim`), DCP
checkpoints (`checkpoint`), small collectives (`collectives`) and the torchrun command line
(`launch`). Encoding and scoring with the sharded model live one layer up, in `inference`.
"""
