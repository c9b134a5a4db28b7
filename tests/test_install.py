"""`make install` (Makefile) switches an existing .venv between DEVICE=cpu and DEVICE=cuda
coherently, run for real against a fake `python` that plays pip and torch from a state file:
the other fbgemm build is removed before the wanted one is installed (both write into
fbgemm_gpu/), DEVICE=cuda replaces a CPU-only torch by the CUDA build, and when it still has no
CUDA the install stops with one sentence instead of reporting success. Nothing is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO

FAKE_PYTHON = r'''#!{python}
"""Plays `python -m pip` (show / install / uninstall) and `python -c` torch checks."""
import json, pathlib, sys

root = pathlib.Path(__file__).resolve().parents[1]
state = json.loads((root / "state.json").read_text())
args = sys.argv[1:]
with (root / "calls.log").open("a") as log:
    log.write(" ".join(args) + "\n")
installed = state["installed"]
code = 0
if args[:2] == ["-m", "pip"]:
    words, skip = [], False
    for a in args[2:]:
        if skip:
            skip = False
        elif a == "--extra-index-url":
            skip = True
        elif not a.startswith("-"):
            words.append(a)
    command, specs = words[0], words[1:]
    names = [s.split("==")[0] for s in specs]
    if command == "show":
        code = 0 if names[0] in installed else 1
    elif command == "uninstall":
        for name in names:
            installed.pop(name, None)
    elif command == "install":
        for spec in specs:
            name, _, version = spec.partition("==")
            if name == "torch" and "+cu" in version:
                if not state["cuda_index_reachable"]:
                    print("ERROR: no matching distribution for " + spec, file=sys.stderr)
                    code = 1
                    continue
                installed["torch"] = version
            elif name == "torch":
                installed.setdefault("torch", state["plain_torch"])
            elif not name.startswith("."):
                installed.setdefault(name, version)
elif args[:1] == ["-c"] and "torch.version.cuda" in args[1]:
    torch = installed.get("torch")
    code = 1 if torch is None or torch.endswith("+cpu") else 0
(root / "state.json").write_text(json.dumps(state))
sys.exit(code)
'''


def _make(tmp: Path, device: str, installed: dict, plain_torch: str, reachable: bool = True):
    venv = tmp / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text(FAKE_PYTHON.replace("{python}", sys.executable))
    fake.chmod(0o755)
    state = {"installed": installed, "plain_torch": plain_torch, "cuda_index_reachable": reachable}
    (venv / "state.json").write_text(json.dumps(state))
    proc = subprocess.run(
        ["make", "-C", str(REPO), "install", f"DEVICE={device}", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = (venv / "calls.log").read_text().splitlines()
    final = json.loads((venv / "state.json").read_text())["installed"]
    return proc, calls, final, (venv / f".installed-{device}").exists()


def _index(calls: list[str], *words: str) -> int:
    return next(i for i, c in enumerate(calls) if all(w in c.split() for w in words))


def test_make_n_prints_the_switch_for_both_devices(tmp_path: Path) -> None:
    lines = {}
    for device in ("cpu", "cuda"):
        proc = subprocess.run(
            ["make", "-n", "-C", str(REPO), "install", f"DEVICE={device}", f"VENV={tmp_path}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines[device] = proc.stdout
    assert "uninstall -y fbgemm-gpu-cpu fbgemm-gpu" in lines["cuda"]
    assert "install torch==2.13.0 fbgemm-gpu==1.8.0" in lines["cuda"]
    assert "torch==2.13.0+cu130" in lines["cuda"] and "torch.version.cuda is None" in lines["cuda"]
    assert "uninstall -y fbgemm-gpu fbgemm-gpu-cpu" in lines["cpu"]
    assert "install torch==2.13.0 fbgemm-gpu-cpu==1.8.0" in lines["cpu"]


def test_cuda_replaces_cpu_fbgemm_and_cpu_torch(tmp_path: Path) -> None:
    cpu_venv = {"torch": "2.13.0+cpu", "fbgemm-gpu-cpu": "1.8.0", "torchrec": "1.8.0"}
    proc, calls, final, stamped = _make(tmp_path, "cuda", cpu_venv, plain_torch="2.13.0+cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stamped and "fbgemm-gpu-cpu" not in final
    assert final["fbgemm-gpu"] == "1.8.0" and final["torch"] == "2.13.0+cu130"
    # the CPU build leaves before the CUDA one comes, so no file of either is left half-owned
    assert _index(calls, "uninstall", "fbgemm-gpu-cpu") < _index(
        calls, "install", "fbgemm-gpu==1.8.0"
    )
    assert _index(calls, "uninstall", "torch") < _index(calls, "install", "torch==2.13.0+cu130")
    assert "replacing the CPU-only torch" in proc.stdout


def test_cuda_stops_with_one_sentence_when_torch_stays_cpu_only(tmp_path: Path) -> None:
    cpu_venv = {"torch": "2.13.0+cpu", "fbgemm-gpu-cpu": "1.8.0"}
    proc, calls, final, stamped = _make(
        tmp_path, "cuda", cpu_venv, plain_torch="2.13.0+cpu", reachable=False
    )
    assert proc.returncode != 0 and not stamped
    sentence = [line for line in proc.stdout.splitlines() if line.startswith("DEVICE=cuda:")]
    assert len(sentence) == 1 and "torch.version.cuda is None" in sentence[0]
    assert not any("torchrec" in c for c in calls)  # stopped before the rest of the stack


def test_cuda_keeps_a_cuda_torch(tmp_path: Path) -> None:
    proc, calls, final, stamped = _make(tmp_path, "cuda", {}, plain_torch="2.13.0")
    assert proc.returncode == 0 and stamped, proc.stdout + proc.stderr
    assert final["torch"] == "2.13.0" and final["fbgemm-gpu"] == "1.8.0"
    assert not any("uninstall" in c.split() for c in calls)


def test_cpu_removes_the_cuda_fbgemm(tmp_path: Path) -> None:
    cuda_venv = {"torch": "2.13.0", "fbgemm-gpu": "1.8.0", "torchrec": "1.8.0"}
    proc, calls, final, stamped = _make(tmp_path, "cpu", cuda_venv, plain_torch="2.13.0")
    assert proc.returncode == 0 and stamped, proc.stdout + proc.stderr
    assert "fbgemm-gpu" not in final and final["fbgemm-gpu-cpu"] == "1.8.0"
    assert _index(calls, "uninstall", "fbgemm-gpu") < _index(
        calls, "install", "fbgemm-gpu-cpu==1.8.0"
    )
    assert not any("torch.version.cuda" in c for c in calls)  # a CUDA torch runs on a CPU too
