"""PyTorch side of `cargo bench --bench conv` (the `conv/fwd_bwd_<net>_<layer>` rows).

Times forward + backward of every 3x3 pad-1 convolution of the paper's C = 128 CIFAR net
(batch 64) and Short-chunk CNN (batch 16) at the shapes morphgrad's bench uses, with the same
gradient requirements (the CIFAR images need none), on `--threads` threads (default 2).
Median of `--reps` timed repetitions after 3 warm-up ones; prints GFLOP/s (forward 2*N*Cout*Cin*9*H*W,
backward the same once per gradient). Run: python3 benches/torch_conv_layers.py
"""
import argparse
import csv
import os
import statistics
import time

import torch

# (name, batch, cin, cout, height, width), shared with benches/conv.rs.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_layers.csv")) as f:
    LAYERS = [(r["name"], *(int(r[k]) for k in ("batch", "cin", "cout", "height", "width"))) for r in csv.DictReader(f)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, capability {torch.backends.cpu.get_cpu_capability()}")
    for name, n, cin, cout, h, w in LAYERS:
        x = torch.rand(n, cin, h, w) - 0.5
        x.requires_grad_(cin != 3)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        gy = torch.rand(n, cout, h, w) - 0.5
        flop = 2 * n * cout * cin * 9 * h * w * (3 if x.requires_grad else 2)
        times = []
        for rep in range(3 + args.reps):
            t = time.perf_counter()
            conv(x).backward(gy)
            if rep >= 3:
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"conv/fwd_bwd_{name}: {med * 1e3:.2f} ms  {flop / med / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
