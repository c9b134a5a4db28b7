#!/bin/sh
# one 2-process training run of 300 steps on the 2x world (docs/ids.md, "Training overhead"); $1 = hash | managed; $2 = log file; $3 = eviction interval; edit the paths
cd /work/wt/mch
OUT=/tmp/mch/bench_out_$1
rm -rf $OUT
X2="synthetic.oversubscribed_ids=true features.user.0.cardinality=10000 features.item.0.cardinality=25000 features.user.4.cardinality=25000 data.path=/tmp/mch/default"
M=""
if [ "$1" = managed ]; then
  M="features.user.0.ids=managed features.item.0.ids=managed features.user.4.ids=managed features.user.0.managed.eviction_interval=$3 features.item.0.managed.eviction_interval=$3 features.user.4.managed.eviction_interval=$3"
fi
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
exec nice -n 5 .venv/bin/python -m torch.distributed.run --nproc_per_node 2 -m dmmp_rec.cli train --config configs/synthetic.yaml $X2 $M train.max_steps=300 train.eval_every=100000 train.checkpoint_every=100000 train.eval_batches=2 train.out=$OUT >> $2 2>&1
