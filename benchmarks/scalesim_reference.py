"""Reference cycle counts from SCALE-Sim 3.0 (PyPI ``scalesim==3.0.0``).

This script is NOT part of chipforge and does not import it. It is run with the
Python of a separate virtual environment that holds SCALE-Sim, because SCALE-Sim
3.0 crashes with numpy >= 2.4::

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install 'numpy<2.4' scalesim==3.0.0
    /tmp/scalesim-venv/bin/python benchmarks/scalesim_reference.py            # all cases
    /tmp/scalesim-venv/bin/python benchmarks/scalesim_reference.py --list     # case ids
    /tmp/scalesim-venv/bin/python benchmarks/scalesim_reference.py --only gemm_32x32_os

For each case it writes a SCALE-Sim config, topology and (empty) layout file to a
temporary directory, runs SCALE-Sim through its Python API in a child process
(``scalesim.scale_sim.scalesim(save_disk_space=True, ...)``: the API honours
``save_disk_space`` and then writes no per-cycle traces, unlike the CLI whose
``-s`` flag is ignored), reads COMPUTE_REPORT.csv and DETAILED_ACCESS_REPORT.csv,
deletes the temporary directory, and upserts one row (keyed by case_id) into
``tests/data/scalesim3_reference.csv``. Each child gets a wall-clock limit
(``--timeout``, default 120 s); a case that runs past it is killed and recorded
with status ``skipped_timeout``. Cases predicted to be far too slow (see
``--max-work``) are recorded as ``skipped_predicted`` without running. One SCALE-Sim runs at a time.
SCALE-Sim's own report lines used are echoed to stdout and to ``--log``.

GEMM topology columns (checked in scalesim/topology_utils.py, load_arrays_gemm,
lines 97-110 of the 3.0.0 wheel)::

    row  = "name, M, N, K,"   (the trailing comma is required: row.split(',')[:-1])
    entries = [name, m, k, 1, k, 1, n, 1, 1, ...]
            = [name, ifmap_h=M, ifmap_w=K, filter_h=1, filter_w=K,
               channels=1, num_filters=N, stride_h=1, stride_w=1]

so ofmap = M x 1 pixels per filter, window = K, filters = N, and the operand
matrices built by compute/operand_matrix.py are ifmap (M x K), filter (K x N),
ofmap (M x N): out[M x N] = A[M x K] . B[K x N]. M is the streamed "pixel"
dimension, N the number of output channels (filters), K the reduction.
SCALE-Sim's own gpt2 GEMM topology (scale-sim-v2 repo, topologies/GEMM_mnk/gpt2.csv,
header "Layer,M,N,K") is used verbatim below for the GPT-2 cases. Note that its
feed-forward width is 3072 (PW-FF-L1 = 1024 x 3072 x 1600), not GPT-2-XL's 6400.

For conv layers the columns m, n, k are filled with the implicit GEMM that
SCALE-Sim builds: m = ofmap_h * ofmap_w with ofmap_h = ceil((ifmap_h -
filter_h + stride) / stride) (topology_utils.topo_calc_hyperparams), n =
num_filters, k = filter_h * filter_w * channels.

Mapping onto the array (compute/systolic_compute_{os,ws,is}.py):
  os: Sr = M on array rows, Sc = N on array cols, T = K streamed;
  ws: Sr = K on array rows, Sc = N on array cols, T = M streamed;
  is: Sr = K on array rows, Sc = M on array cols, T = N streamed.
folds = ceil(Sr/R) * ceil(Sc/C); the column ``folds`` is the number of folds
SCALE-Sim simulated (len of its per-fold mapping-efficiency list), and
row_folds/col_folds are ceil(Sr/R) and ceil(Sc/C).

Bandwidth (scale_config.py and single_layer_sim.py, SCALE-Sim 3.0.0):
  * ``[run_presets] InterfaceBandwidth: CALC`` = "estimate bandwidth" mode: the
    ifmap/filter read buffers are ReadBufferEstimateBw objects that never stall
    (every read is a hit, the DRAM traffic is back-computed); the ofmap drain
    bandwidth is set to ArrayWidth words/cycle. The ``Bandwidth`` key is not read.
  * ``InterfaceBandwidth: USER`` (used for every case here): the ifmap read
    buffer's DRAM bandwidth is ``[layout] IfmapSRAMBankBandwidth``, the filter
    read buffer's is ``[layout] FilterSRAMBankBandwidth``, and only the ofmap
    write buffer uses ``[architecture_presets] Bandwidth`` (first value).
    All three are in words per cycle (word = 1 byte, fixed in
    single_layer_sim.run). The read bandwidth must be divisible by the
    corresponding SRAMBankNum (an assert in memory/read_buffer.py), so we set
    the bank numbers to 1. This script sets all three bandwidths to the single
    value in the column ``dram_bw_words_per_cycle``.
  * SRAMs are double buffered with an active fraction of 0.5 (hard-coded): half
    of each SRAM is the active buffer, half the prefetch / drain buffer. The
    first fill of the ifmap/filter active buffers is scheduled at negative cycles
    and so is never a stall; it shows only in "Total Cycles (incl. prefetch)".
    If an operand fits in half its SRAM, no later prefetch ever happens and the
    read side cannot stall.

Columns: compute_cycles is COMPUTE_REPORT's "Total Cycles" (compute incl.
stalls, as PEERS.md records it), stall_cycles its "Stall Cycles",
total_cycles_incl_prefetch its "Total Cycles (incl. prefetch)" (= last ofmap
DRAM write cycle - first ifmap/filter DRAM read cycle). demand_rows is the
number of rows of SCALE-Sim's demand matrix (= stall-free cycles + 1: SCALE-Sim
reports the cycle index of the last row, an off-by-one). See
/tmp/scalesim_notes.md (written alongside) for the cycle model.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "scalesim3_reference.csv"
DEFAULT_LOG = Path(tempfile.gettempdir()) / "scalesim_reference.log"

COLUMNS = [
    "case_id",
    "status",
    "array_rows",
    "array_cols",
    "dataflow",
    "layer_kind",
    "layer_name",
    "m",
    "n",
    "k",
    "ifmap_h",
    "ifmap_w",
    "filter_h",
    "filter_w",
    "channels",
    "num_filters",
    "stride",
    "ifmap_sram_kb",
    "filter_sram_kb",
    "ofmap_sram_kb",
    "bw_mode",
    "dram_bw_words_per_cycle",
    "compute_cycles",
    "stall_cycles",
    "total_cycles_incl_prefetch",
    "demand_rows",
    "folds",
    "row_folds",
    "col_folds",
    "mapping_eff_pct",
    "compute_util_pct",
    "ifmap_dram_reads",
    "filter_dram_reads",
    "ofmap_dram_writes",
    "scalesim_version",
    "wall_seconds",
    "note",
]

# TPU-v1-like SRAM sizes (kB) used unless a case is meant to stall.
BIG_SRAM = (6144, 6144, 2048)
# A bandwidth high enough that no case below stalls (checked: stall_cycles == 0).
STALL_FREE_BW = 1024

# SCALE-Sim's own GPT-2 GEMM topology (scale-sim-v2 topologies/GEMM_mnk/gpt2.csv):
# (name, M, N, K)
GPT2_GEMMS = [
    ("QKT", 1024, 1024, 64),
    ("QKTV", 1024, 64, 1024),
    ("Linear1", 1024, 4800, 1600),
    ("Linear2", 1024, 1600, 1600),
    ("PW-FF-L1", 1024, 3072, 1600),
    ("PW-FF-L2", 1024, 1600, 3072),
]

# SCALE-Sim's alexnet topology (scale-sim-v2 topologies/conv_nets/alexnet.csv):
# (name, ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride)
ALEXNET = [
    ("Conv1", 224, 224, 11, 11, 3, 96, 4),
    ("Conv2", 27, 27, 5, 5, 96, 256, 1),
    ("Conv3", 13, 13, 3, 3, 256, 384, 1),
    ("Conv4", 13, 13, 3, 3, 384, 384, 1),
    ("Conv5", 13, 13, 3, 3, 384, 256, 1),
]


def _gemm(case_id, rows, cols, df, m, n, k, name="GEMM", sram=BIG_SRAM, bw=STALL_FREE_BW, note=""):
    return dict(
        case_id=case_id,
        array_rows=rows,
        array_cols=cols,
        dataflow=df,
        layer_kind="gemm",
        layer_name=name,
        m=m,
        n=n,
        k=k,
        ifmap_sram_kb=sram[0],
        filter_sram_kb=sram[1],
        ofmap_sram_kb=sram[2],
        bw_mode="USER",
        dram_bw_words_per_cycle=bw,
        note=note,
    )


def _conv(case_id, rows, cols, df, layer, sram=BIG_SRAM, bw=STALL_FREE_BW, note=""):
    name, ih, iw, fh, fw, ch, nf, s = layer
    oh = int(math.ceil((ih - fh + s) / s))
    ow = int(math.ceil((iw - fw + s) / s))
    return dict(
        case_id=case_id,
        array_rows=rows,
        array_cols=cols,
        dataflow=df,
        layer_kind="conv",
        layer_name=name,
        m=oh * ow,
        n=nf,
        k=fh * fw * ch,
        ifmap_h=ih,
        ifmap_w=iw,
        filter_h=fh,
        filter_w=fw,
        channels=ch,
        num_filters=nf,
        stride=s,
        ifmap_sram_kb=sram[0],
        filter_sram_kb=sram[1],
        ofmap_sram_kb=sram[2],
        bw_mode="USER",
        dram_bw_words_per_cycle=bw,
        note=note,
    )


def build_cases():
    """All cases, in the order they are run (cheap first)."""
    cases = []
    # (a) square GEMMs, stall-free bandwidth, SRAM large enough to hold the layer.
    for size in (128, 256, 512, 1024):
        for arr in (32, 128, 256):
            if size == 1024 and arr == 32:
                continue
            for df in ("os", "ws", "is"):
                cases.append(_gemm(f"gemm{size}_{arr}x{arr}_{df}", arr, arr, df, size, size, size))
    # (b) AlexNet conv layers on 256x256, OS (PEERS.md: 10,475/8,729/5,627/7,931/3,965).
    for layer in ALEXNET:
        cases.append(_conv(f"alexnet_{layer[0].lower()}_256x256_os", 256, 256, "os", layer))
    # (c) stalls: TPU-v1-like config with 10 words/cycle (PEERS.md: WS 119,176 / 90,537 stall).
    for df in ("os", "ws"):
        cases.append(
            _gemm(
                f"stall_gemm1024_256x256_{df}_bw10",
                256,
                256,
                df,
                1024,
                1024,
                1024,
                bw=10,
                note="TPU-v1-like config, 10 words/cycle",
            )
        )
    # (c) small SRAMs + low bandwidth on 32x32 so the read buffers must refetch.
    for size in (128, 256):
        for df in ("os", "ws"):
            cases.append(
                _gemm(
                    f"stall_gemm{size}_32x32_{df}_bw4_sram16k",
                    32,
                    32,
                    df,
                    size,
                    size,
                    size,
                    sram=(16, 16, 16),
                    bw=4,
                    note="16 kB SRAMs, 4 words/cycle: meant to stall",
                )
            )
            cases.append(
                _gemm(
                    f"stall_gemm{size}_32x32_{df}_bw4_bigsram",
                    32,
                    32,
                    df,
                    size,
                    size,
                    size,
                    bw=4,
                    note="TPU-v1 SRAMs, 4 words/cycle",
                )
            )
    # (a) GPT-2 layer GEMMs (SCALE-Sim's own gpt2 topology); the slowest, so last.
    for arr in (256, 128, 32):
        for df in ("os", "ws"):
            for name, m, n, k in GPT2_GEMMS:
                cases.append(
                    _gemm(f"gpt2_{name.lower()}_{arr}x{arr}_{df}", arr, arr, df, m, n, k, name=name)
                )
    return cases


def predicted_demand_rows(case):
    """Stall-free demand rows per SCALE-Sim's fold formulas (used only to pre-skip)."""
    r, c, df = case["array_rows"], case["array_cols"], case["dataflow"]
    m, n, k = case["m"], case["n"], case["k"]
    if df == "os":
        sr, sc, t = m, n, k
        per = t + r + c - 2
    elif df == "ws":
        sr, sc, t = k, n, m
        per = 2 * r + c + t - 2
    else:
        sr, sc, t = k, m, n
        per = 2 * r + c + t - 2
    return math.ceil(sr / r) * math.ceil(sc / c) * per


# ----------------------------------------------------------------------------- child


def write_inputs(case, d: Path):
    bw = int(case["dram_bw_words_per_cycle"])
    cfg = f"""[general]
run_name = ref

[architecture_presets]
ArrayHeight : {case["array_rows"]}
ArrayWidth : {case["array_cols"]}
IfmapSramSzkB : {case["ifmap_sram_kb"]}
FilterSramSzkB : {case["filter_sram_kb"]}
OfmapSramSzkB : {case["ofmap_sram_kb"]}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : {bw}
Dataflow : {case["dataflow"]}
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : {bw}
IfmapSRAMBankNum : 1
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : {bw}
FilterSRAMBankNum : 1
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : {case["bw_mode"]}
UseRamulatorTrace : False
"""
    (d / "ref.cfg").write_text(cfg)
    if case["layer_kind"] == "gemm":
        topo = (
            "Layer, M, N, K,\n" + f"{case['layer_name']}, {case['m']}, {case['n']}, {case['k']},\n"
        )
    else:
        topo = (
            "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
            "Channels, Num Filter, Strides,\n"
            f"{case['layer_name']}, {case['ifmap_h']}, {case['ifmap_w']}, {case['filter_h']}, "
            f"{case['filter_w']}, {case['channels']}, {case['num_filters']}, {case['stride']},\n"
        )
    (d / "topo.csv").write_text(topo)
    # SCALE-Sim opens a layout file unconditionally; a header-only file is enough
    # when the custom layouts are off.
    (d / "layout.csv").write_text("Layer name,\n")


def run_child(case_json: str, workdir: str):
    from importlib.metadata import version

    from scalesim.scale_sim import scalesim

    case = json.loads(case_json)
    d = Path(workdir)
    write_inputs(case, d)
    t0 = time.time()
    sim = scalesim(
        save_disk_space=True,
        verbose=False,
        config=str(d / "ref.cfg"),
        topology=str(d / "topo.csv"),
        layout=str(d / "layout.csv"),
        input_type_gemm=case["layer_kind"] == "gemm",
    )
    sim.run_scale(top_path=str(d / "out"))
    wall = time.time() - t0
    rep = d / "out" / "ref"
    lines = {}
    for name in ("COMPUTE_REPORT.csv", "DETAILED_ACCESS_REPORT.csv"):
        lines[name] = (rep / name).read_text().splitlines()
    comp_hdr = [h.strip() for h in lines["COMPUTE_REPORT.csv"][0].split(",")]
    comp = [x.strip() for x in lines["COMPUTE_REPORT.csv"][1].split(",")]
    comp = dict(zip(comp_hdr, comp, strict=True))
    det_hdr = [h.strip() for h in lines["DETAILED_ACCESS_REPORT.csv"][0].split(",")]
    det = [x.strip() for x in lines["DETAILED_ACCESS_REPORT.csv"][1].split(",")]
    det = dict(zip(det_hdr, det, strict=True))
    layer = sim.runner.single_layer_sim_object_list[0]
    cs = layer.compute_system
    row_folds = getattr(cs, "row_fold_demand_matrices", cs.row_fold)
    res = dict(
        compute_cycles=int(float(comp["Total Cycles"])),
        stall_cycles=int(float(comp["Stall Cycles"])),
        total_cycles_incl_prefetch=int(float(comp["Total Cycles (incl. prefetch)"])),
        demand_rows=int(cs.ofmap_demand_matrix.shape[0]),
        folds=len(cs.mapping_efficiency_per_fold),
        row_folds=int(row_folds),
        col_folds=int(cs.col_fold),
        mapping_eff_pct=round(float(comp["Mapping Efficiency %"]), 4),
        compute_util_pct=round(float(comp["Compute Util %"]), 4),
        ifmap_dram_reads=int(float(det["DRAM IFMAP Reads"])),
        filter_dram_reads=int(float(det["DRAM Filter Reads"])),
        ofmap_dram_writes=int(float(det["DRAM OFMAP Writes"])),
        scalesim_version=version("scalesim"),
        sim_seconds=round(wall, 2),
        report_lines={k: v[:2] for k, v in lines.items()},
    )
    print("RESULT " + json.dumps(res), flush=True)


# ----------------------------------------------------------------------------- parent


def load_rows(path: Path):
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


def save_rows(path: Path, rows: dict, order: list):
    path.parent.mkdir(parents=True, exist_ok=True)
    rank = {cid: i for i, cid in enumerate(order)}
    ids = sorted(rows, key=lambda c: (rank.get(c, len(rank)), c))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for cid in ids:
            w.writerow({k: rows[cid].get(k, "") for k in COLUMNS})
    tmp.replace(path)


def log(msg: str, logf):
    print(msg, flush=True)
    logf.write(msg + "\n")
    logf.flush()


def run_case(case, timeout, logf):
    work = Path(tempfile.mkdtemp(prefix="scalesim_ref_"))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(case), str(work)]
    t0 = time.time()
    # Run from the temp dir: SCALE-Sim must not see a source checkout in the cwd.
    proc = subprocess.Popen(
        cmd, cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        wall = time.time() - t0
        shutil.rmtree(work, ignore_errors=True)
        return dict(
            status="skipped_timeout",
            wall_seconds=round(wall, 1),
            note=(case.get("note", "") + f"; killed after {timeout} s").lstrip("; "),
        )
    wall = time.time() - t0
    shutil.rmtree(work, ignore_errors=True)
    result = None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    if proc.returncode != 0 or result is None:
        tail = (err or out).strip().splitlines()[-3:]
        log("  ERROR: " + " | ".join(tail), logf)
        return dict(
            status="error",
            wall_seconds=round(wall, 1),
            note=(case.get("note", "") + "; error: " + " | ".join(tail)[-200:]).lstrip("; "),
        )
    for name, ls in result.pop("report_lines").items():
        for ln in ls:
            log(f"  [{name}] {ln}", logf)
    result["status"] = "ok"
    result["wall_seconds"] = round(wall, 2)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--log", type=Path, default=DEFAULT_LOG)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    ap.add_argument(
        "--max-work",
        type=float,
        default=4.5e7,
        help="pre-skip cases whose predicted work, stall-free demand rows x "
        "(rows + cols of the array), exceeds this (SCALE-Sim 3.0 serves "
        "about 0.55-0.8 M such request slots per second on a shared "
        "2-core machine, so 4.5e7 is about 80-120 s)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=2400.0,
        help="stop starting new cases after this many seconds in total",
    )
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only case ids containing this substring (repeatable)",
    )
    ap.add_argument(
        "--skip-done",
        action="store_true",
        help="do not rerun cases already in --out with status ok or skipped_timeout",
    )
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("CASE_JSON", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        run_child(*args.child)
        return 0

    cases = build_cases()
    order = [c["case_id"] for c in cases]
    if args.only:
        cases = [c for c in cases if any(s in c["case_id"] for s in args.only)]
    if args.list:
        for c in cases:
            print(c["case_id"], predicted_demand_rows(c))
        return 0

    rows = load_rows(args.out)
    start = time.time()
    with args.log.open("a") as logf:
        for case in cases:
            cid = case["case_id"]
            if args.skip_done and rows.get(cid, {}).get("status") in ("ok", "skipped_timeout"):
                continue
            pred = predicted_demand_rows(case)
            work = pred * (case["array_rows"] + case["array_cols"])
            row = dict(case)
            if work > args.max_work:
                row.update(
                    status="skipped_predicted",
                    wall_seconds="",
                    note=(
                        case.get("note", "") + f"; not run: {pred} stall-free demand "
                        f"rows x {case['array_rows'] + case['array_cols']} = {work:.3g} "
                        f"request slots > --max-work {args.max_work:.3g}, expected to "
                        f"exceed the {args.timeout:.0f} s limit"
                    ).lstrip("; "),
                )
                log(f"{cid}: skipped (predicted work {work:.3g} > {args.max_work:.3g})", logf)
            elif time.time() - start > args.budget:
                log(f"{cid}: not run (budget of {args.budget} s spent)", logf)
                continue
            else:
                log(f"{cid}: running (predicted {pred} stall-free rows)", logf)
                row.update(run_case(case, args.timeout, logf))
                log(
                    f"{cid}: {row['status']} cycles={row.get('compute_cycles', '')} "
                    f"stall={row.get('stall_cycles', '')} wall={row['wall_seconds']} s",
                    logf,
                )
            rows[cid] = row
            save_rows(args.out, rows, order)
    return 0


if __name__ == "__main__":
    sys.exit(main())
