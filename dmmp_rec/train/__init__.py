"""The training job (`trainer.train`): build and shard DMMP, restore a checkpoint, train through
TrainPipelineSparseDist, validate and keep the best step. `state` and `position` are what a
checkpoint records besides tensors (job state, the loader's exact position), `restore` loads the
newest usable checkpoint, `resume` says what carries over when the plan changed, `best` keeps the
best-validated checkpoint, `logger` progress and TensorBoard.
"""
