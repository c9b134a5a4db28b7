"""Sharding plans: from a plan config file to a torchrec ShardingPlan, and back to JSON.

- `config`: the plan config (YAML -> typed `PlanConfig`: topology, per-table constraints,
  quantized comms), validated on load (`load_plan_config`).
- `topology`: the torchrec `Topology` for a world size, with the HBM per GPU it assumes
  (a cap from the config, the local GPU's real memory, or torchrec's default).
- `constraints`: per-table `ParameterConstraints` from the config.
- `planner`: `make_plan` runs torchrec's `EmbeddingShardingPlanner` (also offline, for a
  cluster that is not here); `make_sharders` builds the sharders with their comms codecs.
- `result`: what the planner decided and estimated, per rank and per table (`PlanResult`).
- `io`: `save_plan` / `load_plan`: torchrec has no public plan format, so this is ours.
"""
