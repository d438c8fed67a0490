#!/usr/bin/env bash
# benches/peers.sh — measure convc against ONNX Runtime (and tract, if given) in one run and
# write BENCHMARKS.md.
#
# Usage (from anywhere):  bash benches/peers.sh
#
# What it does, in order:
#   1. builds convc in release (cargo build --release);
#   2. makes (or reuses) a Python venv outside the repo at $VENV with numpy, onnx and
#      onnxruntime (plus openvino when OPENVINO=1);
#   3. compiles ../shared/peers/peak.c into a scratch folder and runs it 3 times on one core
#      (the 128-, 256- and, where the CPU has it, 512-bit FMA peaks, in the same sitting);
#   4. records `convc bench --json` (MACs as written and as executed after the rewrites) and
#      `convc bench --profile` (time per fused kernel group) of every network on 1 thread,
#      and `convc bench --json` on every vector path the CPU runs (CONVC_ISA=sse|avx2|avx512),
#      and on the widest with direct convolution only (CONVC_CONV_ALGO=direct);
#   5. runs ../shared/peers/peers.py for 1 and 2 threads over every network of
#      ../shared/bench: ONNX Runtime (and OpenVINO), convc through
#      `--convc '<repo>/target/release/convc bench {conv} --threads {t}'`, and tract through
#      `--cmd` when $TRACT is the path of a tract command-line binary;
#   6. writes BENCHMARKS.md: the generated part sits between the two `generated` markers and
#      is replaced on every run; any text outside them (e.g. "Where we stand") is kept.
#
# Environment (all optional):
#   VENV        the venv (default: ${TMPDIR:-/tmp}/convc-bench-venv; created if missing)
#   SCRATCH     scratch folder for peak and the raw results (default: a fresh mktemp -d)
#   SHARED      the shared folder (default: ../shared next to the repo)
#   TRACT       a tract binary (tract-cli 0.23.9, see ../shared/peers/README.md)
#   OPENVINO=1  also install and time OpenVINO
#   NETS        networks to time (default: all of ../shared/bench), space-separated
#   THREADS     thread counts (default: 1,2)
#   SECONDS_PER_ROW, RETRIES, WAIT_QUIET, MAX_OTHER   passed to peers.py (defaults 2, 2, 30, 0.3)
#   ROUNDS      how many times peers.py runs, one after the other (default 2); every engine's
#               row is its lowest median among the rounds' undisturbed rows (peers.py
#               --combine's rule), so a host that slows down for a minute hurts no engine's
#               figure more than another's
#   OUT         the markdown file to write (default: BENCHMARKS.md at the repo root)
#
# Nothing here asserts a time: it measures and reports. The machine may be shared; peers.py
# records, per row, how busy the other cores were, and re-measures disturbed rows.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
SHARED="$(cd "$SHARED" && pwd)"
VENV="${VENV:-${TMPDIR:-/tmp}/convc-bench-venv}"
SCRATCH="${SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/convc-bench.XXXXXX")}"
OUT="${OUT:-$ROOT/BENCHMARKS.md}"
THREADS="${THREADS:-1,2}"
SECONDS_PER_ROW="${SECONDS_PER_ROW:-2}"
RETRIES="${RETRIES:-2}"
WAIT_QUIET="${WAIT_QUIET:-30}"
MAX_OTHER="${MAX_OTHER:-0.3}"
ROUNDS="${ROUNDS:-2}"
mkdir -p "$SCRATCH"
log() { printf '[peers.sh] %s\n' "$*" >&2; }

case "$VENV" in
  "$ROOT"/*) echo "VENV must be outside the repo ($ROOT)" >&2; exit 2 ;;
esac

log "building convc (release)"
(cd "$ROOT" && cargo build --release --quiet)
CONVC="$ROOT/target/release/convc"

if [ ! -x "$VENV/bin/python" ]; then
  log "creating the venv $VENV"
  python3 -m venv "$VENV"
fi
PKGS=(numpy onnx onnxruntime)
[ "${OPENVINO:-0}" = 1 ] && PKGS+=(openvino)
if ! "$VENV/bin/python" -c "import numpy, onnx, onnxruntime" 2>/dev/null \
  || { [ "${OPENVINO:-0}" = 1 ] && ! "$VENV/bin/python" -c "import openvino" 2>/dev/null; }; then
  log "installing ${PKGS[*]} into the venv"
  "$VENV/bin/pip" install --quiet "${PKGS[@]}"
fi
ENGINES=ort
"$VENV/bin/python" -c "import openvino" 2>/dev/null && ENGINES=ort,openvino

log "compiling peak.c into $SCRATCH"
gcc -O2 -mfma -mavx2 -pthread "$SHARED/peers/peak.c" -o "$SCRATCH/peak"
: > "$SCRATCH/peak.txt"
for i in 1 2 3; do
  log "peak, one core, run $i of 3"
  "$SCRATCH/peak" 1 >> "$SCRATCH/peak.txt"
done

BENCH="$SHARED/bench"
if [ -n "${NETS:-}" ]; then
  read -r -a NET_LIST <<< "$NETS"
else
  NET_LIST=()
  for f in "$BENCH"/*.conv; do NET_LIST+=("$(basename "$f" .conv)"); done
fi

log "convc: MACs and per-group profile of every network (1 thread)"
for n in "${NET_LIST[@]}"; do
  "$CONVC" bench "$BENCH/$n.conv" --threads 1 --json --min-time 0.3 > "$SCRATCH/$n.json" 2>/dev/null
  "$CONVC" bench "$BENCH/$n.conv" --threads 1 --profile --min-time 0.3 > "$SCRATCH/$n.profile.txt" 2>&1
done

# Every vector path this CPU runs (CONVC_ISA), one thread: the widest is convc's default.
ISAS=(sse)
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then ISAS+=(avx2); fi
if grep -qw avx512f /proc/cpuinfo; then ISAS+=(avx512); fi
log "convc on each vector path: ${ISAS[*]} (1 thread)"
for n in "${NET_LIST[@]}"; do
  for isa in "${ISAS[@]}"; do
    CONVC_ISA=$isa "$CONVC" bench "$BENCH/$n.conv" --threads 1 --json --min-time 0.5 \
      > "$SCRATCH/$n.isa-$isa.json" 2>/dev/null
  done
done
# The widest path once more with direct convolution only (its default, `auto`, may take
# Winograd for 3x3 layers): what Winograd gains, and that `auto` never loses.
WIDEST="${ISAS[${#ISAS[@]}-1]}"
COLS=("${ISAS[@]}")
if [ "$WIDEST" != sse ]; then
  log "convc on $WIDEST with direct convolution only (1 thread)"
  for n in "${NET_LIST[@]}"; do
    CONVC_ISA=$WIDEST CONVC_CONV_ALGO=direct "$CONVC" bench "$BENCH/$n.conv" --threads 1 --json \
      --min-time 0.5 > "$SCRATCH/$n.isa-$WIDEST+direct.json" 2>/dev/null
  done
  COLS+=("$WIDEST+direct")
fi
echo "${COLS[*]}" > "$SCRATCH/isas.txt"

PEERS_ARGS=(--engines "$ENGINES" --threads "$THREADS" --seconds "$SECONDS_PER_ROW"
  --retries "$RETRIES" --wait-quiet "$WAIT_QUIET" --max-other "$MAX_OTHER"
  --nets "${NET_LIST[@]}"
  --convc "$CONVC bench {conv} --threads {t}")
if [ -n "${TRACT:-}" ]; then
  if [ ! -x "$TRACT" ]; then echo "TRACT=$TRACT is not an executable" >&2; exit 2; fi
  # tract prints `N ms/i.` in colour: the sed makes it the `N ms/image` peers.py reads.
  PEERS_ARGS+=(--cmd "tract=$TRACT {onnx} --set N=1 -O \$([ {t} = 1 ] || echo --threads {t}) bench -R --warmup-time 500 --max-time 2000 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's#ms/i[.]#ms/image#'")
fi
ROUND_JSON=()
for r in $(seq "$ROUNDS"); do
  log "peers.py, round $r of $ROUNDS (this takes a while)"
  (cd "$SHARED" && "$VENV/bin/python" peers/peers.py "${PEERS_ARGS[@]}" \
    --json "$SCRATCH/peers-$r.json" --md "$SCRATCH/peers-$r.md" \
    --note "benches/peers.sh round $r of $ROUNDS") > "$SCRATCH/peers-$r.log"
  ROUND_JSON+=("$SCRATCH/peers-$r.json")
done
(cd "$SHARED" && "$VENV/bin/python" peers/peers.py --combine "${ROUND_JSON[@]}" \
  --max-other "$MAX_OTHER" --md "$SCRATCH/peers.md") > /dev/null

log "writing $OUT"
"$VENV/bin/python" - "$SCRATCH" "$OUT" "${NET_LIST[@]}" <<'PY'
import json, os, platform, re, subprocess, sys, datetime
from pathlib import Path

scratch, out, nets = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
BEGIN, END = "<!-- generated by benches/peers.sh: begin -->", "<!-- generated by benches/peers.sh: end -->"

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

peak_text = (scratch / "peak.txt").read_text()
def peaks_of(bits):
    return [float(m.group(1)) for m in re.finditer(rf"{bits}-bit FMA.*?median\s+([\d.]+) GFLOP/s", peak_text)]
peaks, peaks256, peaks512 = peaks_of(128), peaks_of(256), peaks_of(512)
# The reference: the widest vectors this CPU runs (convc's default path uses them).
widest = peaks512 or peaks256 or peaks
widest_bits = 512 if peaks512 else 256 if peaks256 else 128
peak = max(widest) if widest else None
isas = (scratch / "isas.txt").read_text().split()
by_isa = {(n, i): json.loads((scratch / f"{n}.isa-{i}.json").read_text()) for n in nets for i in isas}
# Every round of peers.py; each (network, engine, threads) row is its lowest median among
# the rounds' undisturbed rows (all rows if none is), the rule of `peers.py --combine`.
rounds = [json.loads(p.read_text()) for p in sorted(scratch.glob("peers-*.json"),
                                                     key=lambda p: int(p.stem.split("-")[1]))]
meta = dict(rounds[0]["meta"])
meta["load1_end"] = rounds[-1]["meta"].get("load1_end")
calm = lambda r: (r.get("other_cpu_cores") or 0) <= meta.get("max_other", 1e9)
pool = {}
for run in rounds:
    for r in run["results"]:
        if "error" not in r:
            pool.setdefault((r["network"], r["engine"], r["threads"]), []).append(r)
rows = []
for key, rs in pool.items():
    rows.append(min([r for r in rs if calm(r)] or rs, key=lambda r: r["ms_per_image_median"]))
order = {}
for run in rounds:
    for r in run["results"]:
        order.setdefault((r["network"], r["engine"], r["threads"]), len(order))
rows.sort(key=lambda r: order[(r["network"], r["engine"], r["threads"])])
starts = ", ".join(run["meta"].get("started_utc", "?") + " UTC" for run in rounds)
conv = {n: json.loads((scratch / f"{n}.json").read_text()) for n in nets}

def cell(net, engine, t):
    for r in rows:
        if r["network"] == net and r["engine"] == engine and r["threads"] == t and "error" not in r:
            return r
    return None

engines = []
for r in rows:
    if r["engine"] not in engines:
        engines.append(r["engine"])
peers = [e for e in engines if e != "convc"]
threads = sorted({r["threads"] for r in rows})
names = {"onnxruntime": "ORT", "openvino": "OpenVINO", "tract": "tract", "convc": "convc"}

def ms(r):
    if r is None:
        return "—"
    flag = " !" if (r.get("other_cpu_cores") or 0) > meta.get("max_other", 1e9) else ""
    return f"{r['ms_per_image_median']:.3f}{flag}"

L = []
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
L.append(BEGIN)
L.append("")
L.append(f"Measured {now} on **{cpu_model()}**, {os.cpu_count()} logical CPUs "
         f"({platform.system()} {platform.release()}), batch 1, by `bash benches/peers.sh`.")
L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items() if v) + ".")
if widest:
    L.append(f"FMA peak of one core (`../shared/peers/peak.c`, 3 runs, best of the medians): "
             + ", ".join(f"{b}-bit {max(v):.1f}" for b, v in ((128, peaks), (256, peaks256), (512, peaks512)) if v)
             + f" GFLOP/s; the widest, **{peak:.1f} GFLOP/s** ({widest_bits}-bit), is the reference below.")
L.append(f"Load average at the start and the end of the timings: {meta.get('load1_start')}, "
         f"{meta.get('load1_end')}. A `!` marks a row measured while other processes kept more than "
         f"{meta.get('max_other')} cores busy (disturbed even after retries).")
L.append(f"peers.py ran {len(rounds)} time(s), one after the other (started {starts}); every "
         "engine's figure below is its lowest median among the rounds, the same rule for every "
         "engine (`peers.py --combine`; each round's table is at the end).")
L.append("")
L.append("### Time per image (ms, median) and ratio convc / best peer")
L.append("")
hdr = ["network", "MACs written", "MACs executed"]
for t in threads:
    hdr += [f"{names.get(e, e)} {t}t" for e in ["convc"] + peers] + [f"ratio {t}t"]
L.append("| " + " | ".join(hdr) + " |")
L.append("|---|" + "---:|" * (len(hdr) - 1))
for n in nets:
    c = conv[n]
    line = [n, f"{c['macs_written']:,}", f"{c['macs_executed']:,}"]
    for t in threads:
        mine = cell(n, "convc", t)
        line.append(ms(mine))
        best = None
        for e in peers:
            r = cell(n, e, t)
            line.append(ms(r))
            if r and (best is None or r["ms_per_image_median"] < best["ms_per_image_median"]):
                best = r
        if mine and best:
            line.append(f"{mine['ms_per_image_median'] / best['ms_per_image_median']:.2f} "
                        f"({names.get(best['engine'], best['engine'])})")
        else:
            line.append("—")
    L.append("| " + " | ".join(line) + " |")
L.append("")
L.append("### convc throughput")
L.append("")
L.append("GFLOP/s = 2 × MACs / median time. *Written*: the network's MACs as written (what the peers "
         "execute); *executed*: after convc's exact rewrites. % of peak = executed GFLOP/s on one thread "
         f"/ the {widest_bits}-bit peak above. Scaling = time at 1 thread / time at 2 threads.")
L.append("")
L.append(f"| network | GFLOP/s written 1t | GFLOP/s executed 1t | % of {widest_bits}-bit peak 1t | GFLOP/s executed 2t | scaling 2t/1t | compile (ms) |")
L.append("|---|---:|---:|---:|---:|---:|---:|")
for n in nets:
    c = conv[n]
    r1, r2 = cell(n, "convc", 1), cell(n, "convc", 2)
    g = lambda r, m: 2 * m / (r["ms_per_image_median"] * 1e-3) / 1e9 if r else None
    f = lambda v, fmt: format(v, fmt) if v is not None else "—"
    gw1, ge1, ge2 = g(r1, c["macs_written"]), g(r1, c["macs_executed"]), g(r2, c["macs_executed"])
    pct = ge1 / peak * 100 if (ge1 is not None and peak) else None
    sc = r1["ms_per_image_median"] / r2["ms_per_image_median"] if (r1 and r2) else None
    L.append(f"| {n} | {f(gw1, '.1f')} | {f(ge1, '.1f')} | {f(pct, '.0f')}% | {f(ge2, '.1f')} "
             f"| {f(sc, '.2f')}x | {c['codegen_ms']:.1f} (+ passes {c['passes_ms']:.1f}) |")
L.append("")
L.append("### convc on each vector path (1 thread, `CONVC_ISA=... convc bench --json`)")
L.append("")
L.append("ms per image (median) and GFLOP/s executed. `sse` is Cranelift's own f32x4 code; `avx2` and "
         "`avx512` run the dense reductions in the rustc-compiled microkernels (`crates/convc-jit/src/wide.rs`), "
         "with 3x3 stride-1 layers as Winograd where the cost model takes it (`--conv-algo auto`, the default); "
         "`+direct` is the widest path with direct convolution only (`CONVC_CONV_ALGO=direct`).")
L.append("")
L.append("| network | " + " | ".join(f"{i} ms | {i} GFLOP/s" for i in isas) + " |")
L.append("|---|" + "---:|" * (2 * len(isas)))
for n in nets:
    cells = []
    for i in isas:
        r = by_isa[(n, i)]
        cells += [f"{r['ms_per_image']:.3f}", f"{r['gflops_executed']:.1f}"]
    L.append(f"| {n} | " + " | ".join(cells) + " |")
L.append("")
L.append("### convc per fused kernel group (1 thread, `convc bench --profile`)")
L.append("")
for n in nets:
    text = (scratch / f"{n}.profile.txt").read_text()
    prof = text[text.find("profile"):] if "profile" in text else ""
    rewrites = [l for l in text.splitlines() if l.startswith(("decompose:", "fold-batchnorm:"))]
    L.append(f"**{n}**" + (" — " + "; ".join(rewrites) if rewrites else ""))
    L.append("")
    L.append("```text")
    L.extend(l.rstrip() for l in prof.splitlines()[1:])
    L.append("```")
    L.append("")
L.append("The rounds side by side (`peers.py --combine`):")
L.append("")
L.append((scratch / "peers.md").read_text().rstrip())
L.append("")
L.append(END)
generated = "\n".join(L) + "\n"

if out.exists():
    old = out.read_text()
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + generated.rstrip("\n") + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + generated
else:
    new = ("# Benchmarks\n\nconvc against ONNX Runtime (and tract when `$TRACT` is set) on the networks of "
           "`../shared/bench/`, measured in one run by `bash benches/peers.sh`.\n\n" + generated)
out.write_text(new)
print(f"wrote {out}")
PY
log "done; raw results in $SCRATCH"
