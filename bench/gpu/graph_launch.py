"""Host CPU time of one CUDA graph launch against the graph's kernel count (the
part of the host's time per decoded token that grows with the model's layers).

    python bench/gpu/graph_launch.py [--nodes 8,64,170,512]

Captures chains of N tiny kernels with torch, instantiates each through the
driver (ctypes on libcuda) with several flags, and times cuGraphLaunch plus a
blocking wait per launch with the calling thread's CPU time.
"""

from __future__ import annotations

import argparse
import ctypes
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", default="8,64,170,512")
    ap.add_argument("--launches", type=int, default=2000)
    args = ap.parse_args()
    cu = ctypes.CDLL("libcuda.so.1")
    ver = ctypes.c_int()
    cu.cuDriverGetVersion(ctypes.byref(ver))
    print(f"driver API version {ver.value}, torch {torch.__version__}, {torch.cuda.get_device_name()}")
    x = torch.zeros(16, device="cuda")
    stream = torch.cuda.Stream()
    for n in (int(v) for v in args.nodes.split(",")):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            for _ in range(3):
                x.add_(1.0)
            torch.cuda.synchronize()
            with torch.cuda.graph(g, stream=stream):
                for _ in range(n):
                    x.add_(1.0)
        row = [f"{n:4d} kernels"]
        # torch's own replay (cudaGraphLaunch through the runtime)
        for _ in range(50):
            g.replay()
        torch.cuda.synchronize()
        c, t = time.thread_time(), time.perf_counter()
        for _ in range(args.launches):
            g.replay()
            stream.synchronize()
        row.append(f"replay: thread CPU {(time.thread_time() - c) / args.launches * 1e6:6.1f} us, "
                   f"wall {(time.perf_counter() - t) / args.launches * 1e6:6.1f} us")
        # launch only (no wait per launch): the launch call's own cost
        c = time.thread_time()
        for _ in range(args.launches):
            g.replay()
        row.append(f"launch alone: {(time.thread_time() - c) / args.launches * 1e6:6.1f} us")
        torch.cuda.synchronize()
        print("   ".join(row), flush=True)


if __name__ == "__main__":
    main()
