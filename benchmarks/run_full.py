"""The full ``senland-geo bench`` run with the settings used for docs/performance.md.

Run on a quiet machine: ``python benchmarks/run_full.py [OUT_DIR]`` (default
``benchmarks/results/full``); on a shared one prefix ``OMP_WAIT_POLICY=PASSIVE`` (see
docs/performance.md). Writes bench.json (incrementally), bench.md and two plots. Besides
the models it times the plain smp baseline, the MKL matmul and oneDNN conv peaks, and JAX
in fp32 and bf16.
"""

from __future__ import annotations

import sys

from senland_geo import bench


def main() -> None:
    """Run the benchmark and write its outputs."""
    out = sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/full"
    cfg = bench.BenchConfig(steps=3, warmup=1, peak_sizes=(2048, 4096), peak_repeats=3)
    result = bench.run(cfg, log=print, partial=lambda r: bench.write_json(r, out))
    bench.write_outputs(result, out)
    print(bench.summary_table(result))


if __name__ == "__main__":
    main()
