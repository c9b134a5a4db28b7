"""Behaviour fingerprint: the figures of a fixed-seed tiny-world pipeline, to show a refactor
changes nothing.

    python scripts/fingerprint.py run OUT        # synth, train, eval, export, retrieve, compare
    python scripts/fingerprint.py diff BEFORE AFTER

`run` executes the CLI (one thread a process) on `dmmp_rec.config.presets.TINY_WORLD` (seed 7):
60 training steps with validation and checkpoints every 30, `eval` on the validation day,
`export` (user side, item vectors, FAISS indexes), `retrieve` for 5 users, and `compare` of
DMMP, the two-tower, the no-gate ablation and torch-rechub MMoE over 2 seeds on both days (about
a minute on 2 cores).
`diff` compares every JSON, JSON-lines and Markdown file the two runs wrote, number for number,
after dropping what legitimately changes between runs (timings, throughput, paths, versions,
checkpoint manifests and the exported program's hash, whose bytes hold paths); it exits 1 on any
difference.
Run it on the commit before a refactor and after it: "0 differences" is the claim.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from dmmp_rec.config.presets import TINY_WORLD

CONFIG = "configs/synthetic.yaml"
# keys whose values differ between two identical runs (time, speed, where, which build; the
# exported program's bytes hold the source paths of the code: `retrieve` checks what it computes)
VOLATILE = re.compile(
    r"(time|second|_s$|per_s|throughput|wall|elapsed|path|dir|date|host|pid|torch|created|_ms"
    r"|latency|version|out$|started|finished|^command$|^sha256$|^bytes$)",
    re.I,
)
# a row of the comparison's training-cost table: the last two cells are seconds
COST_ROW = re.compile(r"(\| \d+ \| \d+ \| \d+ \|) [\d.]+ \| [\d.]+ \|$", re.M)
MINUTES = re.compile(r"\d+(\.\d+)? min\.")  # the comparison's wall-clock totals
COMPARED = {".json", ".jsonl", ".md"}
# the float sums of a multi-threaded kernel depend on the thread count: pin it
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _steps(out: Path) -> list[tuple[str, list[str]]]:
    """The pipeline: (log name, CLI arguments) in order."""
    world = [*TINY_WORLD, f"data.path={out / 'data'}", f"train.out={out / 'run'}", "train.seed=7"]
    world += ["train.max_steps=60", "train.eval_every=30", "train.checkpoint_every=30"]
    c = ["--config", CONFIG]
    users = ["--oracle-users", "300", "--teacher-users", "300"]
    run = str(out / "run")
    return [
        ("synth", ["synth", *c, "--quiet", *world]),
        ("train", ["train", *c, *world]),
        (
            "eval",
            ["eval", *c, "--checkpoint", run, "--out", str(out / "eval_val.json")]
            + ["--split", "val", "--quiet", *users, *world],
        ),
        (
            "export",
            ["export", *c, "--checkpoint", run, "--out", str(out / "export"), "--quiet", *world],
        ),
        (
            "retrieve",
            ["retrieve", "--export", str(out / "export"), "--demo-users", "5"]
            + ["--format", "jsonl", "--out", str(out / "retrieve.jsonl")],
        ),
        (
            "compare",
            ["compare", *c, "--out", str(out / "compare"), "--steps", "40", "--seeds", "2"]
            + ["--models", "dmmp", "two_tower", "rechub_mmoe", "no_gate", "--splits", "val", "test"]
            + ["--quiet", *users, *world],
        ),
    ]


def run(out: Path) -> int:
    """Run the pipeline into `out` (emptied first); stop at the first failing step."""
    if out.exists() and any(out.iterdir()):
        sys.exit(f"fingerprint: {out} is not empty; give a new directory")
    out.mkdir(parents=True, exist_ok=True)
    for name, argv in _steps(out):
        print(f"fingerprint: {name}", flush=True)
        with open(out / f"{name}.log", "w") as log:
            cmd = [sys.executable, "-m", "dmmp_rec.cli", *argv]
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=ONE_THREAD)
            if done.returncode != 0:
                print(f"fingerprint: {name} failed, see {out / (name + '.log')}")
                return 1
    return 0


def _normal(x: Any) -> Any:
    """`x` without its volatile keys, at every depth."""
    if isinstance(x, dict):
        return {k: _normal(v) for k, v in x.items() if not VOLATILE.search(k)}
    if isinstance(x, list):
        return [_normal(v) for v in x]
    return x


def differences(x: Any, y: Any, where: str) -> list[str]:
    """Where two normalised JSON values differ, one line each."""
    if isinstance(x, dict) and isinstance(y, dict):
        out = [f"{where}/{k}: only in one run" for k in sorted(set(x) ^ set(y))]
        for k in sorted(set(x) & set(y)):
            out += differences(x[k], y[k], f"{where}/{k}")
        return out
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [
            d
            for i, (u, v) in enumerate(zip(x, y, strict=True))
            for d in differences(u, v, f"{where}[{i}]")
        ]
    return [] if x == y else [f"{where}: {str(x)[:80]} != {str(y)[:80]}"]


def _file_differences(a: Path, b: Path, rel: str) -> list[str]:
    """`a` and `b` are the same file of two runs; the run directories are masked first."""
    ta = a.read_text().replace(str(a.parents[len(Path(rel).parts) - 1]), "<R>")
    tb = b.read_text().replace(str(b.parents[len(Path(rel).parts) - 1]), "<R>")
    if a.suffix == ".md":
        ta, tb = (MINUTES.sub("N min.", COST_ROW.sub(r"\1", t)) for t in (ta, tb))
        return [] if ta == tb else [f"{rel}: text differs"]
    if a.suffix == ".json":
        return differences(_normal(json.loads(ta)), _normal(json.loads(tb)), rel)
    rows_a, rows_b = ta.splitlines(), tb.splitlines()
    if len(rows_a) != len(rows_b):
        return [f"{rel}: {len(rows_a)} != {len(rows_b)} lines"]
    parse = [_normal(json.loads(r)) for r in rows_a], [_normal(json.loads(r)) for r in rows_b]
    return differences(*parse, rel)


def _compared_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.suffix in COMPARED
        and p.name != "MANIFEST.json"
        and p.relative_to(root).parts[0] != "data"
    }


def diff(before: Path, after: Path) -> int:
    """Print every difference between two runs; 0 when there is none."""
    names_a, names_b = _compared_files(before), _compared_files(after)
    problems = [f"{n}: only in {before}" for n in sorted(names_a - names_b)]
    problems += [f"{n}: only in {after}" for n in sorted(names_b - names_a)]
    for rel in sorted(names_a & names_b):
        problems += _file_differences(before / rel, after / rel, rel)
    print("\n".join(problems[:60]), flush=True)
    print(f"{len(names_a | names_b)} files compared, {len(problems)} differences")
    return 1 if problems else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("out", type=Path)
    d = sub.add_parser("diff")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    a = p.parse_args()
    return run(a.out) if a.command == "run" else diff(a.before, a.after)


if __name__ == "__main__":
    sys.exit(main())
