"""One module per `dmmp-rec` command (synth, convert-aliccp, plan, train, eval, export, retrieve,
compare, demo); `option_types` holds the argument checks they share, `run_config` the config a
command that loads a checkpoint uses.
"""
