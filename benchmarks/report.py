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


def _run_table(t: dict[str, Any]) -> list[str]:
    lines = [
        "| system | processes | global batch | samples/s | CPU us per sample | "
        "peak GiB per process | build s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in t["runs"]:
        if "error" in run:
            lines.append(
                f"| {run['system']} | {run['world_size']} | | failed: {run['error']} | | | |"
            )
            continue
        memory = " / ".join(f"{m:.2f}" for m in run.get("peak_rss_gib_per_process", [])) or "n/a"
        lines.append(
            f"| {run['system']} | {run['world_size']} | {run['global_batch']} | "
            f"{_mmm(run['samples_per_s_summary'])} | "
            f"{_mmm(run.get('cpu_us_per_sample_summary'), 1)} | {memory} | {run['build_s']} |"
        )
    lines += ["", "Ratios (medians): " + ", ".join(f"{k} = {v}" for k, v in t["ratios"].items())]
    scaling = t.get("scaling", {})
    if scaling:
        lines.append(
            "Scaling 1 -> 2 processes (speedup, efficiency = speedup / 2): "
            + ", ".join(
                f"{k} {v['speedup']}x ({100 * v['efficiency']:.0f}%)" for k, v in scaling.items()
            )
        )
    return lines


def _train(t: dict[str, Any]) -> list[str]:
    return [
        "## Training throughput (samples/s, median (min-max) of 5 repetitions after warm-up)",
        "",
        *_run_table(t),
    ]


def _roofline(r: dict[str, Any]) -> list[str]:
    rates = r["gemm_gflops"]
    return [
        "## Compute roofline of the dense step",
        "",
        f"- FLOPs per sample (torch flop counter, DenseArch forward + backward, batch "
        f"{r['batch']}): {r['mflop_per_sample']} MFLOP; without the candidate term "
        f"{r.get('mflop_per_sample_without_candidates')}; by system: "
        + ", ".join(f"{k} {v}" for k, v in r.get("mflop_per_sample_by_system", {}).items()),
        f"- GEMM rate at the step's own {r['distinct_gemms']} product shapes, GFLOP/s: "
        f"1 thread {_mmm(rates['1_thread'], 1)}, 2 threads {_mmm(rates['2_threads'], 1)}, "
        f"2 single-thread processes {_mmm(rates['2_processes'], 1)}",
        "- roofline (rate / FLOPs per sample), samples/s: "
        + ", ".join(f"{k} {v:,}" for k, v in r["roofline_samples_per_s"].items()),
        "- share of the roofline reached (1 process: 1-thread rate, 2 processes: 2-process "
        "rate, each over its own FLOPs): "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r.get("share_of_roofline", {}).items()),
        f"- GEMM rate per CPU second (1 thread; the rate while it holds a core): "
        f"{_mmm(r.get('gemm_gflops_per_cpu_s_1_thread'), 1)} GFLOP/s",
        f"- DenseArch step alone (forward, backward, fused AdamW; 1 thread): CPU "
        f"{_mmm(r.get('dense_step', {}).get('cpu_ms'), 1)} ms, wall "
        f"{_mmm(r.get('dense_step', {}).get('wall_ms'), 1)} ms",
        *(
            f"- where DMMP's {k} step goes, CPU time per process ({v['cpu_ms_per_step']} ms): "
            "matrix products "
            f"{100 * v['matrix_products']:.0f}%, rest of the dense step "
            f"{100 * v['rest_of_dense_step']:.0f}%, tables + pipeline + collectives + waiting "
            f"{100 * v['tables_pipeline_collectives']:.0f}%"
            for k, v in r.get("dmmp_step_breakdown", {}).items()
        ),
    ]


def _sparse(sp: dict[str, Any]) -> list[str]:
    m = sp["membw"]
    return [
        f"## Embedding-heavy workload ({sp['config']})",
        "",
        f"{sp['rows_total']:,} embedding rows ({sp['table_gib']} GiB of tables), "
        f"{sp['hist_len']}-id sequences, dense part {sp['mflop_per_sample']} MFLOP per sample; "
        "batches drawn in memory (benchmarks/sparse_batches.py).",
        "",
        *_run_table(sp),
        "",
        f"- embedding traffic per sample (lower bound): {m['bytes_per_sample']:,.0f} bytes; "
        f"copy bandwidth {_mmm(m['copy_gbs'], 2)} GB/s -> limit "
        f"{m['limit_samples_per_s']:,} samples/s",
        "- share of the copy bandwidth used by embedding traffic: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in m["share_of_limit"].items()),
    ]


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
        ("roofline", _roofline),
        ("membw", _membw),
        ("sparse", _sparse),
        ("inference", _inference),
        ("retrieval", _retrieval),
        ("planner", _planner),
    ):
        if key in r:
            lines += fn(r[key]) + [""]
    return "\n".join(lines)


def write_markdown(result: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(render(result))
