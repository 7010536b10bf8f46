import sys, collections
lines = sys.stdin.read().split("STEP")[-1].splitlines()
agg = collections.defaultdict(lambda: [0, 0.0]); tot = 0
for l in lines:
    if not l.startswith("onednn_verbose") or ",exec," not in l: continue
    f = l.split(",")
    key = f"{f[5]:12s} {f[6]:40s} {f[7]:18s}"
    if len(sys.argv) > 1: key += " " + f[-2]
    agg[key][0] += 1; agg[key][1] += float(f[-1]); tot += float(f[-1])
for k, (n, t) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:int(sys.argv[2]) if len(sys.argv) > 2 else 14]:
    print(f"{t:9.1f} ms {n:4d}  {k}")
print("total onednn ms", round(tot, 1))
