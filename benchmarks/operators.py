"""Speed and memory of every registered operator at photo sizes.

Prints one table: set-up time (construction plus the first V/Vᵀ, which builds any lazy factors), forward time, Vᵀ and V time (per image), the memory the operator
holds, and what its dense matrix would need (8 m n bytes in float64). Times are medians of a few
runs on this machine (shared, noisy: compare rows of one run, not runs of different days).

    .venv/bin/python benchmarks/operators.py                 # 3x256x256
    .venv/bin/python benchmarks/operators.py --large         # also 3x1024x1024 where feasible
    .venv/bin/python benchmarks/operators.py --only gaussian_blur,blur --threads 2
    .venv/bin/python benchmarks/operators.py --markdown      # the table in docs/measurements.md
    .venv/bin/python benchmarks/operators.py --photo --markdown   # 12 MP (3x3000x4000; compressed
        # sensing at 3x2048x4096, its power-of-two size), each operator in its own process with its peak memory

``peak`` (``--photo``, or ``--isolate``) is the growth of the process's peak resident memory from
just before the operator is built to the end of its timings: the operator, its set-up's
temporaries, one image, its Vᵀ coefficients and the outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _threads_from_argv(default: int = 1) -> int:
    """--threads N, read before numpy/torch load so OpenBLAS (scipy's SVDs) obeys it too."""
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return default


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(_threads_from_argv())

import numpy as np  # noqa: E402
import torch  # noqa: E402

import invkit
from invkit.forward import SVDOperator

from _timing import median_time  # benchmarks/ is on sys.path when run as a script


def held_bytes(obj: object, seen: set[int] | None = None, depth: int = 0) -> int:
    """Bytes of tensors/arrays an operator keeps, walking attributes, dicts, lists and helper objects."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes() if obj.device.type != "meta" else 0
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(held_bytes(v, seen, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__.split(".")[0] in ("invkit", "invkit_operators", "__main__"):
        return sum(held_bytes(v, seen, depth + 1) for v in vars(obj).values())
    return 0


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EB"


def bench(name: str, shape: tuple[int, int, int], repeats: int) -> dict[str, str]:
    reg = invkit.get_registry()
    t0 = time.perf_counter()
    try:
        op = reg.build_operator(name, shape, {})
    except (ValueError, invkit.ParamError) as exc:
        return {"operator": name, "shape": "x".join(map(str, shape)), "note": f"skipped: {exc}"}
    x = torch.rand(1, *op.in_shape, generator=torch.Generator().manual_seed(0))
    if isinstance(op, SVDOperator):  # lazily built factors (1-D SVDs, FFTs) count as set-up
        op.V(op.Vt(x))
        op.singular_values
    build = time.perf_counter() - t0
    row = {
        "operator": name,
        "shape": "x".join(map(str, shape)),
        "setup": f"{build * 1e3:.1f} ms",
        "forward": f"{median_time(lambda: op.forward(x), repeats) * 1e3:.1f} ms",
    }
    if isinstance(op, SVDOperator):
        z = op.Vt(x)
        row["Vt"] = f"{median_time(lambda: op.Vt(x), repeats) * 1e3:.1f} ms"
        row["V"] = f"{median_time(lambda: op.V(z), repeats) * 1e3:.1f} ms"
    else:
        row["Vt"] = row["V"] = "-"
    row["held"] = fmt_bytes(held_bytes(op))
    row["dense"] = fmt_bytes(8.0 * op.in_numel * op.out_numel)
    return row


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def isolated(name: str, shape: tuple[int, int, int], repeats: int, threads: int) -> dict[str, str]:
    """``bench`` in a fresh process (so its peak memory is the operator's alone), with ``peak`` added."""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--only", name, "--shape", ",".join(map(str, shape)), "--repeats", str(repeats),
           "--threads", str(threads), "--row-json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"operator": name, "shape": "x".join(map(str, shape)), "note": f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="also run 3x1024x1024")
    parser.add_argument("--only", default=None, help="comma-separated operator names")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (what docs/measurements.md holds)")
    parser.add_argument("--photo", action="store_true", help="12 MP instead: 3x3000x4000 (compressed sensing 3x2048x4096), one process per operator")
    parser.add_argument("--isolate", action="store_true", help="one process per operator and shape, with its peak memory")
    parser.add_argument("--shape", default=None, help="C,H,W instead of the defaults")
    parser.add_argument("--row-json", action="store_true", help=argparse.SUPPRESS)  # one row as JSON (--isolate's child)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else invkit.get_registry().names("operator")
    if args.row_json:
        import json

        invkit.get_registry().operator_class(names[0])  # plugin imports are not the operator's set-up
        torch.zeros(1) + 1  # nor torch's first-op initialisation
        before = _peak_rss()
        row = bench(names[0], tuple(int(v) for v in args.shape.split(",")), args.repeats)
        row["peak"] = fmt_bytes(_peak_rss() - before)
        print(json.dumps(row))
        return
    if args.shape:
        shapes = [tuple(int(v) for v in args.shape.split(","))]
    elif args.photo:
        shapes = [(3, 3000, 4000)]
    else:
        shapes = [(3, 256, 256)] + ([(3, 1024, 1024)] if args.large else [])
    jobs = [(name, (3, 2048, 4096) if args.photo and name == "compressed_sensing" else shape) for shape in shapes for name in names]
    if args.photo or args.isolate:
        rows = [isolated(name, shape, 2 if shape[1] > 256 else args.repeats, args.threads) for name, shape in jobs]
    else:
        rows = [bench(name, shape, args.repeats if shape[1] <= 256 else 2) for name, shape in jobs]
    cols = ["operator", "shape", "setup", "forward", "Vt", "V", "held", "dense"] + (["peak"] if args.photo or args.isolate else [])
    print(f"torch {torch.__version__}, {args.threads} thread(s); times per image (median of {args.repeats}); float32")
    if args.markdown:
        print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            cells = [r["operator"], r["shape"], *([r["note"]] + [""] * (len(cols) - 3) if "note" in r else [r.get(c, "") for c in cols[2:]])]
            print("| " + " | ".join(cells) + " |")
        return
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        if "note" in r:
            print(f"{r['operator'].ljust(widths['operator'])}  {r['shape'].ljust(widths['shape'])}  {r['note']}")
        else:
            print("  ".join(r.get(c, "").ljust(widths[c]) for c in cols))


if __name__ == "__main__":
    main()
