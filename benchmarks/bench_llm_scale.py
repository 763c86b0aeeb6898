"""LLM-scale tickets: import, similarity, coding cost and every dashboard page, in bounded memory.

    python benchmarks/bench_llm_scale.py                  # full size: ~8.8 GB of fp16 shards in a temp folder
    python benchmarks/bench_llm_scale.py --scale 0.1      # 0.1 of the widths (a quick check)

Generates K = 4 LLaMA-shaped sharded Hugging Face checkpoints with TinyLlama-1.1B
shapes (22 layers, hidden 2048, intermediate 5632, 32 heads / 4 kv heads, vocab
32000, fp16): one shared "pretrained" weight set, pruned per calibration domain
Wanda-style (50 % per output row by |w| times the domain's activation norms;
the norms differ per domain). Then every step runs in its own subprocess, which
reports its wall time and peak RSS (``VmHWM`` of /proc/self/status, which an
exec starts afresh, unlike ``ru_maxrss``; per page, the peak since a reset):

- floor: reading every shard file once (the least any importer must do);
- import: :func:`ingest.hf.import_hf` (streamed, packed masks);
- similarity, coding (per-ticket and joint), collapse, projection tables;
- pages: every dashboard page, cold (caches cleared) and warm (Streamlit AppTest).

Targets (2 cores): import of all four in at most 120 s, peak RSS at most 2 GB
at every step, every page at most 5 s cold and 1 s warm. When the in-memory
path fits (``--scale`` small), the old path (load every tensor, unpack masks)
runs too, side by side, and the streamed numbers are checked equal to it.
The machine these figures come from may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

K = 4
DOMAINS = ["code", "math", "web", "wiki"]
FULL = {"layers": 22, "hidden": 2048, "intermediate": 5632, "heads": 32, "kv_heads": 4, "vocab": 32000}
IMPORT_BUDGET_S, RSS_BUDGET_MB, COLD_BUDGET_S, WARM_BUDGET_S = 120.0, 2048.0, 5.0, 1.0
SHARD_BYTES = 1 << 30
ANALYSES = ("similarity", "coding", "collapse", "projection")


# ----------------------------------------------------------------------------- generation


def shapes_for(scale: float, layers: int | None) -> dict:
    """TinyLlama shapes with widths scaled (multiples of the head count)."""
    c = dict(FULL)
    if layers is not None:
        c["layers"] = layers
    if scale != 1.0:
        unit = c["heads"]
        c["hidden"] = max(unit, round(c["hidden"] * scale / unit) * unit)
        c["intermediate"] = max(8, round(c["intermediate"] * scale / 8) * 8)
        c["vocab"] = max(64, round(c["vocab"] * scale))
    return c


def tensor_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a LLaMA checkpoint, in ``save_pretrained`` order."""
    h, i, kv = c["hidden"], c["intermediate"], c["hidden"] // c["heads"] * c["kv_heads"]
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (c["vocab"], h)}
    for layer in range(c["layers"]):
        p = f"model.layers.{layer}."
        out.update(
            {
                p + "self_attn.q_proj.weight": (h, h),
                p + "self_attn.k_proj.weight": (kv, h),
                p + "self_attn.v_proj.weight": (kv, h),
                p + "self_attn.o_proj.weight": (h, h),
                p + "mlp.gate_proj.weight": (i, h),
                p + "mlp.up_proj.weight": (i, h),
                p + "mlp.down_proj.weight": (h, i),
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
            }
        )
    out["model.norm.weight"] = (h,)
    out["lm_head.weight"] = (c["vocab"], h)
    return out


class _ShardWriter:
    """Append fp16 tensors to a safetensors file whose header is written first (no model in memory)."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]]):
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for n, s in shapes.items():
            size = 2
            for d in s:
                size *= d
            header[n] = {"dtype": "F16", "shape": list(s), "data_offsets": [off, off + size]}
            off += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * ((-len(text)) % 8)
        self.f = open(path, "wb")  # noqa: SIM115
        self.f.write(struct.pack("<Q", len(text)) + text)

    def write(self, arr) -> None:
        self.f.write(arr.astype("<f2", copy=False).tobytes())

    def close(self) -> None:
        self.f.close()


def generate(root: Path, c: dict, seed: int = 0) -> list[Path]:
    """Write K Wanda-pruned sharded checkpoints (one per domain) under ``root``; return their folders."""
    import numpy as np

    shapes = tensor_shapes(c)
    shards: list[dict[str, tuple[int, ...]]] = [{}]
    size = 0
    for n, s in shapes.items():
        nbytes = 2 * int(np.prod(s))
        if size and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][n] = s
        size += nbytes
    folders = [root / d for d in DOMAINS[:K]]
    names = [f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors" for j in range(len(shards))]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c["hidden"],
        "intermediate_size": c["intermediate"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"],
        "vocab_size": c["vocab"],
        "torch_dtype": "float16",
    }
    for k, f in enumerate(folders):
        f.mkdir(parents=True, exist_ok=True)
        index = {n: names[j] for j, shard in enumerate(shards) for n in shard}
        (f / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
        (f / "config.json").write_text(json.dumps({**config, "calibration_domain": DOMAINS[k]}))
    rng = np.random.default_rng(seed)
    # Activation norms per input channel: shared outliers plus a domain-specific factor.
    base = {w: rng.lognormal(0.0, 1.0, w).astype(np.float32) for w in {c["hidden"], c["intermediate"]}}
    domain = [{w: rng.lognormal(0.0, 0.5, w).astype(np.float32) for w in base} for _ in range(K)]
    for j, shard in enumerate(shards):
        writers = [_ShardWriter(f / names[j], shard) for f in folders]
        for n, s in shard.items():
            w = (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(np.float16)
            prune = len(s) == 2 and "embed" not in n and "lm_head" not in n
            for k in range(K):
                if not prune:
                    writers[k].write(w)
                    continue
                score = np.abs(w).astype(np.float32) * (base[s[1]] * domain[k][s[1]])[None, :]  # (out, in)
                half = s[1] // 2
                thr = np.partition(score, half, axis=1)[:, half : half + 1]  # (out, 1): per-row median
                writers[k].write(np.where(score >= thr, w, np.float16(0)))
                del score
        for wr in writers:
            wr.close()
    return folders


# ----------------------------------------------------------------------------- steps (in subprocesses)


def _peak_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (ru_maxrss would carry the parent's size over fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step(name: str, root: Path, args: argparse.Namespace) -> dict:
    """Run one step in this process; return its figures."""
    run_dir = root / "run"
    folders = [root / "models" / d for d in DOMAINS[:K]]
    if name != "floor":  # time the work, not the interpreter loading libraries
        import pandas  # noqa: F401
        import safetensors.torch  # noqa: F401
        import scipy.stats  # noqa: F401
        import torch  # noqa: F401

        import analysis.coding  # noqa: F401
        import analysis.collapse  # noqa: F401
        import analysis.projection  # noqa: F401
        import ingest  # noqa: F401
    t0 = time.perf_counter()
    out: dict = {}
    if name == "floor":
        buf = bytearray(1 << 24)
        total = 0
        for f in sorted((root / "models").rglob("*.safetensors")):
            with open(f, "rb", buffering=0) as fh:
                while n := fh.readinto(buf):
                    total += n
        out["bytes"] = total
    elif name == "import":
        from ingest.hf import import_hf

        import_hf(folders, run_dir, force=True)
    elif name == "baseline_import":
        from ingest import read_tickets, write_run

        write_run(read_tickets(folders), root / "run_baseline", force=True, weights_dtype="none")
    elif name in ("similarity", "coding", "collapse", "projection"):
        from artifacts.run_format import load_run

        run = load_run(run_dir)
        if name == "similarity":
            from analysis.similarity import similarity_table

            df = similarity_table(run, "imported")
            g = df[df["layer"] == "__global__"]
            out["jaccard"] = [round(float(x), 6) for x in g["jaccard"]]
            out["jaccard_star"] = [round(float(x), 6) for x in g["jaccard_star"]]
        elif name == "coding":
            from analysis.coding import coding_table, joint_coding_table

            df = coding_table(run, "imported")
            joint = joint_coding_table(run, "imported")
            out["h2"] = round(float(df[df["layer"] == "__global__"]["h2"].mean()), 6)
            out["total_correlation_bits"] = float(
                joint[joint["layer"] == "__global__"]["total_correlation_bits"].iloc[0]
            )
        elif name == "collapse":
            from analysis.collapse import collapse_curves

            collapse_curves(run)
        else:
            from analysis.projection import ticket_map_table

            ticket_map_table(run)
    elif name == "baseline_analyses":
        from analysis.coding import coding_frame, joint_coding_frame
        from analysis.similarity import similarity_frame
        from artifacts.run_format import load_run

        run = load_run(run_dir)
        masks = run.masks("imported", 0)  # the old path: every layer unpacked to bool
        tickets = run.ticket_names("imported")
        sim = similarity_frame(masks, tickets)
        coding_frame(masks, tickets)
        joint = joint_coding_frame(masks)
        g = sim[sim["layer"] == "__global__"]
        out["jaccard"] = [round(float(x), 6) for x in g["jaccard"]]
        out["jaccard_star"] = [round(float(x), 6) for x in g["jaccard_star"]]
        out["total_correlation_bits"] = float(
            joint[joint["layer"] == "__global__"]["total_correlation_bits"].iloc[0]
        )
    elif name == "pages":
        out["pages"] = _pages(run_dir, [p for p in args.pages.split(",") if p])
    else:
        raise SystemExit(f"unknown step {name}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = _peak_mb()
    return out


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float:
    return _peak_mb()


def _pages(run_dir: Path, pages: list[str]) -> list[dict]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["RTL_RUNS_DIR"] = str(run_dir.parent)
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=600)
    at.session_state["sidebar.run"] = str(run_dir)
    at.run()
    rows = []
    from analysis import packed

    for page in pages:
        st.cache_data.clear()
        st.cache_resource.clear()
        packed.clear_cache()  # the memoised mask counts too: a cold page pays for everything
        at.switch_page(f"views/{page}.py")
        _reset_peak()
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        problems = "; ".join(str(e.value)[:160] for e in [*at.exception, *at.error])
        rows.append({"page": page, "cold": cold, "warm": warm, "peak_mb": _hwm_mb(), "problems": problems})
    return rows


def run_step(name: str, root: Path, args: argparse.Namespace) -> dict:
    """Run one step in a fresh subprocess (its own peak RSS)."""
    cmd = [sys.executable, __file__, "--step", name, "--root", str(root), "--pages", args.pages]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    """Generate, run every step, print figures against the targets; exit 1 if a target is missed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of TinyLlama's widths (default 1)")
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default 22)")
    p.add_argument("--pages", default="", help="comma-separated pages (default: every page)")
    p.add_argument(
        "--tmp", type=Path, default=None, help="parent of the temporary folder (default: system tmp)"
    )
    p.add_argument("--keep", action="store_true", help="keep the generated folder")
    p.add_argument("--baseline", choices=("auto", "yes", "no"), default="auto")
    p.add_argument(
        "--steps",
        default=",".join(ANALYSES + ("pages",)),
        help="steps after the import (default: all): " + ", ".join(ANALYSES + ("pages",)),
    )
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.pages:
        args.pages = ",".join(sorted(x.stem for x in (REPO / "app" / "views").glob("*.py")))
    if args.step:
        print(json.dumps(_step(args.step, args.root, args)))
        return 0

    c = shapes_for(args.scale, args.layers)
    n_params = sum(_prod(s) for s in tensor_shapes(c).values())
    root = Path(tempfile.mkdtemp(prefix="bench_llm_", dir=args.tmp))
    print(f"shapes {c}; {n_params / 1e9:.3f} B parameters per checkpoint, K = {K}, fp16")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (shared: timings include other work)")
    missed = []
    try:
        t0 = time.perf_counter()
        generate(root / "models", c)
        on_disk = sum(f.stat().st_size for f in (root / "models").rglob("*.safetensors"))
        print(f"generated {_gb(on_disk)} in {time.perf_counter() - t0:.1f} s under {root}")

        floor = run_step("floor", root, args)
        imp = run_step("import", root, args)
        if "error" in imp:
            print(f"import FAILED: {imp['error']}")
            return 1
        ratio = imp["seconds"] / max(floor["seconds"], 1e-9)
        print(f"{'step':<18}{'seconds':>9}{'peak RSS MB':>13}  target")
        print(
            f"{'read floor':<18}{floor['seconds']:9.1f}{floor['peak_mb']:13.0f}  "
            f"reading {_gb(floor['bytes'])} once"
        )
        ok = imp["seconds"] <= IMPORT_BUDGET_S and imp["peak_mb"] <= RSS_BUDGET_MB
        missed += [] if ok else ["import"]
        print(
            f"{'import (streamed)':<18}{imp['seconds']:9.1f}{imp['peak_mb']:13.0f}  "
            f"<= {IMPORT_BUDGET_S:.0f} s, <= {RSS_BUDGET_MB:.0f} MB: {'met' if ok else 'MISSED'}; "
            f"{ratio:.2f} x the read floor"
        )
        results = {}
        steps = [x for x in args.steps.split(",") if x]
        for name in [a for a in ANALYSES if a in steps]:
            r = results[name] = run_step(name, root, args)
            if "error" in r:
                missed.append(name)
                print(f"{name:<18} FAILED: {r['error']}")
                continue
            ok = r["peak_mb"] <= RSS_BUDGET_MB
            missed += [] if ok else [name]
            verdict = "met" if ok else "MISSED"
            print(f"{name:<18}{r['seconds']:9.1f}{r['peak_mb']:13.0f}  <= {RSS_BUDGET_MB:.0f} MB: {verdict}")
        sim = results.get("similarity", {})
        print(f"  global Jaccard per pair {sim.get('jaccard')}, J* {sim.get('jaccard_star')}")

        # The old path: every tensor in memory, masks unpacked. Only where it fits.
        unpacked_gb = K * n_params / 1e9 * 7  # fp32 copies, stacks and bools, as measured on 0.19B models
        have = all(n in results and "error" not in results[n] for n in ("similarity", "coding"))
        if have and (args.baseline == "yes" or (args.baseline == "auto" and unpacked_gb < 4)):
            base = run_step("baseline_import", root, args)
            bana = run_step("baseline_analyses", root, args)
            if "error" in base or "error" in bana:
                print(f"baseline FAILED: {base.get('error') or bana.get('error')}")
            else:
                stream_ana = sum(results[n]["seconds"] for n in ("similarity", "coding"))
                stream_mb = max(results[n]["peak_mb"] for n in ("similarity", "coding"))
                print(
                    f"baseline (in memory) import {base['seconds']:.1f} s / {base['peak_mb']:.0f} MB "
                    f"vs streamed {imp['seconds']:.1f} s / {imp['peak_mb']:.0f} MB"
                )
                print(
                    f"baseline (in memory) similarity + coding {bana['seconds']:.1f} s / "
                    f"{bana['peak_mb']:.0f} MB "
                    f"vs streamed {stream_ana:.1f} s / {stream_mb:.0f} MB"
                )
                same = (
                    bana["jaccard"] == results["similarity"]["jaccard"]
                    and bana["jaccard_star"] == results["similarity"]["jaccard_star"]
                )
                same &= bana["total_correlation_bits"] == results["coding"]["total_correlation_bits"]
                print(f"streamed numbers equal the in-memory ones: {'yes' if same else 'NO'}")
                missed += [] if same else ["equality"]
        elif have:
            print(f"baseline (in memory) skipped: it would need about {unpacked_gb:.0f} GB")

        pages = run_step("pages", root, args) if "pages" in steps else {"pages": [], "peak_mb": 0.0}
        if "error" in pages:
            print(f"pages FAILED: {pages['error']}")
            missed.append("pages")
        else:
            print(
                f"{'page':<16}{'cold s':>8}{'warm s':>8}{'peak MB':>9}  "
                f"target <= {COLD_BUDGET_S:.0f} s cold, "
                f"<= {WARM_BUDGET_S:.0f} s warm, <= {RSS_BUDGET_MB:.0f} MB"
            )
            for r in pages["pages"]:
                ok = (
                    r["cold"] <= COLD_BUDGET_S
                    and r["warm"] <= WARM_BUDGET_S
                    and r["peak_mb"] <= RSS_BUDGET_MB
                    and not r["problems"]
                )
                missed += [] if ok else [f"page {r['page']}"]
                status = "met" if ok else ("ERROR " + r["problems"] if r["problems"] else "MISSED")
                print(f"{r['page']:<16}{r['cold']:8.2f}{r['warm']:8.2f}{r['peak_mb']:9.0f}  {status}")
            if pages["pages"]:
                print(f"pages process peak RSS {pages['peak_mb']:.0f} MB")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 1 if missed else 0


def _prod(s: tuple[int, ...]) -> int:
    n = 1
    for d in s:
        n *= d
    return n


if __name__ == "__main__":
    raise SystemExit(main())
