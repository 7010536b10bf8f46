"""ABAB: fresh-process build children of variant trees, interleaved with raw reads.

python ab.py SIZE_NAME ROUNDS VARIANT_DIR... (a variant dir has src/ and benchmarks/)
COMPOSITE env: none|median. Raw child always from /tmp/h3/A (unchanged baseline).
"""
import json, os, subprocess, sys, statistics, shutil
from pathlib import Path
name, rounds, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
composite = os.environ.get("COMPOSITE", "none")
info = Path(f"/tmp/h3/cubebench/{name}/done.json").read_text()
res = {v: [] for v in variants}; raws = []
def child(kind, src, out=None):
    env = dict(os.environ, PYTHONPATH=f"{src}/src")
    cmd = [sys.executable, f"{src}/benchmarks/bench_cube.py", "--child", kind, "--info", info, "--threads", "2"]
    if out: cmd += ["--out", out, "--composite", composite]
    p = subprocess.run(cmd, capture_output=True, env=env, cwd="/tmp/h3")
    if p.returncode: print(p.stderr.decode()[-2000:]); sys.exit(1)
    return json.loads(p.stdout.decode().strip().splitlines()[-1])
for r in range(rounds):
    raws.append(child("raw", "/tmp/h3/A") | {"load": os.getloadavg()[0]})
    for v in (variants if r % 2 == 0 else variants[::-1]):
        out = f"/tmp/h3/ab-{Path(v).name}.zarr"
        res[v].append(child("build", v, out) | {"load": os.getloadavg()[0]})
        shutil.rmtree(out, ignore_errors=True)
def med(xs): return round(statistics.median(xs), 3)
rw, rc = med([x["seconds"] for x in raws]), med([x["cpu_seconds"] for x in raws])
print(f"{name} composite={composite} raw wall {rw} cpu {rc} rss {med([x['peak_rss_mib'] for x in raws])}")
for v in variants:
    xs = res[v]; w = med([x['seconds'] for x in xs]); c = med([x['cpu_seconds'] for x in xs])
    print(f"  {Path(v).name:8s} wall {w} cpu {c} (raw/build wall {rw/w:.3f} cpu {rc/c:.3f}) rss {med([x['peak_rss_mib'] for x in xs])} cpus={[round(x['cpu_seconds'],2) for x in xs]} walls={[round(x['seconds'],2) for x in xs]}")
print("  load", [round(x["load"], 2) for x in raws])
