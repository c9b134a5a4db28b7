"""`dmmp-rec compare`: DMMP, its baselines and the torch-rechub peers (`rechub/`) trained at N
seeds on one world (`runner`, `models`, the run records in `records`), read on the validation
and test days (`flatten`, `analysis`, `gate_analysis`; what they derive is held in `findings`), with
means, intervals and paired differences (`stats`), the product's targets (`targets`) and the
report (`table`, `gate_table`, `notes`, `plot`), all reading records; comparison.json is only
their `to_dict` (and `records.Comparison.from_dict` reads one back).
"""
