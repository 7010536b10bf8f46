"""Print the JAX backend's unet-gn throughput as JSON.

Usage::

    JAX_PLATFORMS=cpu python plugins/senland-geo-jax/bench_jax.py --batch-sizes 8 16
        --steps 5 --fused-steps 4 [--inference]
"""

from __future__ import annotations

import argparse
import json

from senland_geo_jax.bench import run


def main() -> None:
    """Parse arguments, run the benchmark and print JSON rows."""
    parser = argparse.ArgumentParser(description="Print the JAX backend's unet-gn throughput.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fused-steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--inference", action="store_true")
    args = parser.parse_args()
    rows = run(
        batch_sizes=tuple(args.batch_sizes),
        steps=args.steps,
        fused_steps=args.fused_steps,
        size=args.size,
        inference=args.inference,
        base_channels=args.base_channels,
    )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
