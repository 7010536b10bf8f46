"""ABAB: fresh-process build children of variant trees, interleaved with raw reads.

python ab.py SIZE ROUNDS VARIANT_DIR... (a variant dir has src/; 'main' = /work/main)
"""
import json, os, subprocess, sys, time, statistics
from pathlib import Path
name, rounds, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
composite = os.environ.get("COMPOSITE", "none")
info = Path(f"/tmp/lead/cubebench/{name}/done.json").read_text()
nbytes = None
res = {v: [] for v in variants}; raws = []
def child(kind, src, out=None):
    env = dict(os.environ, PYTHONPATH=f"{src}/src")
    cmd = [sys.executable, f"{src}/benchmarks/bench_cube.py", "--child", kind, "--info", info, "--threads", "2"]
    if out: cmd += ["--out", out, "--composite", composite]
    p = subprocess.run(cmd, capture_output=True, env=env, cwd="/tmp/lead/s3/h3")
    if p.returncode: print(p.stderr.decode()[-2000:]); sys.exit(1)
    return json.loads(p.stdout.decode().strip().splitlines()[-1])
for r in range(rounds):
    raws.append(child("raw", "/work/main") | {"load": os.getloadavg()[0]})
    for v in (variants if r % 2 == 0 else variants[::-1]):
        src = "/work/main" if v == "main" else v
        out = f"/tmp/lead/s3/h3/ab-{abs(hash(v))}.zarr"
        res[v].append(child("build", src, out) | {"load": os.getloadavg()[0]})
        import shutil; shutil.rmtree(out, ignore_errors=True)
def med(xs): return round(statistics.median(xs), 3)
print("raw   wall", med([x["seconds"] for x in raws]), "cpu", med([x["cpu_seconds"] for x in raws]), "rss", med([x["peak_rss_mib"] for x in raws]))
for v in variants:
    xs = res[v]
    print(f"{v[-30:]:30s} wall {med([x['seconds'] for x in xs])} cpu {med([x['cpu_seconds'] for x in xs])} write {med([x['write_seconds'] for x in xs])} rss {med([x['peak_rss_mib'] for x in xs])}  cpus={[round(x['cpu_seconds'],2) for x in xs]} walls={[round(x['seconds'],2) for x in xs]}")
print("load", [round(x["load"], 2) for x in raws])
