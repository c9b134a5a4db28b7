"""`dmmp-rec retrieve --export DIR (--users FILE | --demo-users N) -k K`: top-K candidates."""

from __future__ import annotations

import argparse
import json

from dmmp_rec.commands.option_types import number, positive_int
from dmmp_rec.errors import InputError

HELP = "top-K items for users (JSON lines or Parquet of user features), with gate and scores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", required=True, help="directory written by dmmp-rec export")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", help="user features: .parquet, or JSON lines (one user a line)")
    who.add_argument(
        "--demo-users",
        type=positive_int,
        help="N users of the export's world, spread over the gate",
    )
    parser.add_argument("-k", type=positive_int, default=10, help="candidates per user")
    parser.add_argument("--index", choices=("exact", "approx"), default="exact")
    parser.add_argument(
        "--conversion-shift",
        type=number,
        default=0.0,
        metavar="BETA",
        help="serving knob: add BETA to every user's conversion gate logit, "
        "g' = softmax(gate_logits + [0, BETA]); > 0 leans towards purchases, < 0 towards "
        "clicks, 0 = as trained (inf / -inf: conversion / click tower only)",
    )
    parser.add_argument("--format", choices=("table", "jsonl"), default="table", help="stdout")
    parser.add_argument("--out", default=None, help="also write JSON lines to this file")


def _table(results, k: int) -> str:
    lines = []
    for r in results:
        folded = f"  (folded ids: {r.folded})" if r.folded else ""
        lines.append(
            f"{r.label}: gate click {r.gate_click:.2f} / conversion {r.gate_conversion:.2f} "
            f"-> {r.leaning()}{folded}"
        )
        lines.append(f"  {'rank':>4} {'item':>10} {'fused':>9} {'click s_c':>10} {'conv s_v':>10}")
        for rank, c in enumerate(r.candidates[:k], start=1):
            lines.append(
                f"  {rank:>4} {c.item:>10} {c.fused:>9.3f} {c.click:>10.3f} {c.conversion:>10.3f}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dmmp_rec.serving.requests import read_requests
    from dmmp_rec.serving.retrieve import Retriever, demo_users

    retriever = Retriever(args.export, args.index)
    try:
        if args.users:
            requests = read_requests(args.users, retriever.features)
        else:
            requests = demo_users(retriever, args.demo_users)
    except FileNotFoundError as e:  # RequestError is a DmmpError already
        raise InputError(str(e)) from None
    results = retriever.search(requests, args.k, beta=args.conversion_shift)
    lines = [json.dumps(r.to_dict()) for r in results]
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    if args.format == "jsonl":
        print("\n".join(lines))
    else:
        m = retriever.manifest
        print(
            f"{len(results)} users, top {args.k} of {m.num_items} items "
            f"({args.index} index, {m.variant}, tau {m.tau:.4f}, "
            f"conversion shift {args.conversion_shift:g}"
            + (f", {m.quantization.tables} tables)" if m.quantization else ")")
        )
        print(_table(results, args.k))
    return 0
