"""benchmarks/results/latest.md: the tables of one `make bench` run, from its latest.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _mmm(s: dict[str, Any] | None, digits: int = 0) -> str:
    if not s:
        return "n/a"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}-{f.format(s['max'])})"


def _machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    return [
        f"- machine: {m['cpu_model']}, {m['cpu_count']} cores, {m['mem_total_gib']} GiB; "
        f"python {m['python']}, torch {m['torch']}, torchrec {m['torchrec']}, "
        f"fbgemm {m['fbgemm_gpu']}, torch-rechub {m['torch_rechub']}, faiss {m['faiss']}",
        f"- load average (1/5/15 min) at start {m['loadavg_1_5_15']}, at end "
        f"{m.get('loadavg_end')}: the cores are shared with other jobs, so spreads are wide",
        f"- command: `{r['command']}` (config {r['config']}), started {r['started']}, "
        f"took {r.get('total_s')} s",
    ]


def _train(t: dict[str, Any]) -> list[str]:
    lines = [
        "## Training throughput (samples/s, median (min-max) of 5 repetitions after warm-up)",
        "",
        "| system | processes | global batch | samples/s | build s |",
        "|---|---|---|---|---|",
    ]
    for run in t["runs"]:
        if "error" in run:
            lines.append(f"| {run['system']} | {run['world_size']} | | failed: {run['error']} | |")
            continue
        lines.append(
            f"| {run['system']} | {run['world_size']} | {run['global_batch']} | "
            f"{_mmm(run['samples_per_s_summary'])} | {run['build_s']} |"
        )
    lines += ["", "Ratios (medians): " + ", ".join(f"{k} = {v}" for k, v in t["ratios"].items())]
    return lines


def _membw(m: dict[str, Any]) -> list[str]:
    lines = [
        "## Embedding-bound limit",
        "",
        f"- copy bandwidth (numpy, read + write): {_mmm(m['copy_gbs'], 2)} GB/s",
        f"- bytes per sample (lookups + gradients + row-wise Adagrad, lower bound): "
        f"{m['bytes_per_sample']:,.0f}",
        f"- limit: {m['limit_samples_per_s']:,} samples/s",
        "- share of the limit reached: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in m["share_of_limit"].items()),
    ]
    return lines


def _inference(inf: dict[str, Any]) -> list[str]:
    lines = [
        "## Tower inference latency (ms, p50 / p99, one call at a time)",
        "",
        "| tower | variant | batch | p50 | p99 |",
        "|---|---|---|---|---|",
    ]
    for side in ("user", "item"):
        for variant, by_batch in inf.get(side, {}).items():
            for b, s in by_batch.items():
                lines.append(
                    f"| {side} | {variant} | {b} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} |"
                )
    lines += [
        "",
        "user = user tower + gate with its embedding lookups; item = click + conversion towers "
        "with lookups. eager = the training model through the EBC; eager_plain = the serving "
        "module (EmbeddingBags); compiled = torch.compile of it; exported = the torch.export "
        f"archive (`dmmp_rec.serving.user_file`); *_int8 = the same with int8 row-wise tables "
        f"(`dmmp-rec export --quantize int8`). Compile s: {inf.get('compile_s')}; "
        f"export s: {inf.get('export_s')}.",
    ]
    sizes = inf.get("table_bytes")
    if sizes:
        lines += [
            "",
            "Embedding table bytes, fp32 -> int8 row-wise: "
            + "; ".join(
                f"{side} side {s['fp32']:,} -> {s['int8']:,} ({s['fp32'] / s['int8']:.2f}x smaller)"
                for side, s in sizes.items()
            ),
        ]
    return lines


def _retrieval(ret: dict[str, Any]) -> list[str]:
    lines = [
        "## Retrieval (FAISS, top-100, inner product over trained item vectors)",
        "",
        "| items | index | p50 ms | p99 ms | q/s at batch 64 | recall@100 | build s |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in ret["sizes"]:
        for kind in ("exact", "approx"):
            x = s[kind]
            recall = x.get("recall_at_100", 1.0)
            lines.append(
                f"| {s['items']:,} | {x['index']} | {x['single_query']['p50_ms']:.3f} | "
                f"{x['single_query']['p99_ms']:.3f} | {_mmm(x['qps_batch'])} | {recall} | "
                f"{x['build_s']} |"
            )
    lines += ["", f"Item encoding through the trained towers: {ret['encode_items_s']} s."]
    return lines


def _planner(p: dict[str, Any]) -> list[str]:
    lines = [
        f"## Scale beyond this machine: {p['label']}",
        "",
        f"{p['config']} with {p['plan_config']} (world size overridden).",
        "",
        "| GPUs | HBM GiB/rank max (mean) | DDR GiB/rank max | est. step ms | est. samples/s |",
        "|---|---|---|---|---|",
    ]
    for e in p["estimates"]:
        if "error" in e:
            lines.append(f"| {e['world_size']} | no plan: {e['error']} | | | |")
            continue
        lines.append(
            f"| {e['world_size']} | {e['hbm_gib_max']} ({e['hbm_gib_mean']}) | "
            f"{e['ddr_gib_max']} | {e['step_ms_estimate']} | {e['samples_per_s_estimate']:,} |"
        )
    return lines


def render(r: dict[str, Any]) -> str:
    lines = ["# dmmp-rec benchmarks", ""]
    if r.get("quick"):
        lines += ["**--quick smoke run: tiny sizes, the numbers mean nothing.**", ""]
    lines += _machine(r) + [""]
    for key, fn in (
        ("train", _train),
        ("membw", _membw),
        ("inference", _inference),
        ("retrieval", _retrieval),
        ("planner", _planner),
    ):
        if key in r:
            lines += fn(r[key]) + [""]
    return "\n".join(lines)


def write_markdown(result: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(render(result))
