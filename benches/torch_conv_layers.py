"""PyTorch side of `cargo bench --bench conv` (the `conv/fwd_bwd_<net>_<layer>` rows).

Times forward + backward of every 3x3 pad-1 convolution of the paper's C = 128 CIFAR net
(batch 64) and Short-chunk CNN (batch 16) at the shapes morphgrad's bench uses, with the same
gradient requirements (the CIFAR images need none), on `--threads` threads (default 2).
Median of `--reps` timed repetitions after 3 warm-up ones; prints GFLOP/s (forward 2*N*Cout*Cin*9*H*W,
backward the same once per gradient). Run: python3 benches/torch_conv_layers.py
"""
import argparse
import statistics
import time

import torch

LAYERS = [
    ("cifar128_l1_3to128_32x32", 64, 3, 128, 32, 32),
    ("cifar128_l2_128to128_16x16", 64, 128, 128, 16, 16),
    ("cifar128_l3_128to256_8x8", 64, 128, 256, 8, 8),
    ("cifar128_l4_256to256_4x4", 64, 256, 256, 4, 4),
    ("cifar128_l5_256to256_2x2", 64, 256, 256, 2, 2),
    ("shortchunk_l1_1to128_128x231", 16, 1, 128, 128, 231),
    ("shortchunk_l2_128to128_64x115", 16, 128, 128, 64, 115),
    ("shortchunk_l3_128to256_32x57", 16, 128, 256, 32, 57),
    ("shortchunk_l4_256to256_16x28", 16, 256, 256, 16, 28),
    ("shortchunk_l5_256to256_8x14", 16, 256, 256, 8, 14),
    ("shortchunk_l6_256to256_4x7", 16, 256, 256, 4, 7),
    ("shortchunk_l7_256to512_2x3", 16, 256, 512, 2, 3),
]


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
