"""The one-token MoE block, old kernels against the tensor-core ones of
triton_kernels/moe_mma.py, on gpt-oss shapes (20b: 32 experts, 120b: 128;
H = I = 2880, 4 experts per token): each kernel timed alone (L2 flushed between
runs, median), the three launches of each path together, and the block's output
against a float64 reference (max error over the scale sum |w| |x| of each
output, so 1e-6 means fp32-level agreement).

    python bench/gpu/moe_mma_lab.py [--experts 32] [--tiles [W_R,W_K,STAGES,RT ...]] [--baseline FILE]
                                                                   (on a GPU)

--tiles also times moe_mlp1_route_mma / moe_mlp2_route_mma with other
(W_R, W_K, STAGES, RT) choices than the built ones (a list of its own, or the
default list below). --baseline FILE times the two kernels of another version
of moe_mma.py (for example `git show REV:triton_kernels/moe_mma.py > FILE`) at
its own built tiles, in the same process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "triton_kernels"))
import aot  # noqa: E402
import moe_mma  # noqa: E402

FP4 = [0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6]
V = {v.name: v for v in aot.all_variants()}


def launch(name, grid, *args, **over):
    v = V[name]
    cx = dict(v.constexprs)
    cx.update({k: x for k, x in over.items() if k in cx})
    warps = over.get("num_warps", v.num_warps)
    v.kernel[grid](*args, **cx, num_warps=warps, num_stages=v.num_stages)


def experts(E, R, K, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 256, (E, R, K // 32, 16), dtype=torch.uint8, generator=g)
    s = torch.randint(119, 128, (E, R, K // 32), dtype=torch.uint8, generator=g)
    b = (torch.randn(E, R, generator=g) * 0.05).to(torch.bfloat16)
    return q, s, b


def dequant(q, s, e):
    fp4 = torch.tensor(FP4, dtype=torch.float64)
    w = torch.stack([fp4[(q[e] & 15).long()], fp4[(q[e] >> 4).long()]], -1).reshape(q.shape[1], -1, 32)
    return (w * torch.exp2(s[e].double() - 127)[..., None]).reshape(q.shape[1], -1)


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--tiles", nargs="*", default=None)
    ap.add_argument("--baseline", default=None)
    args = ap.parse_args()
    dev = "cuda"
    print(torch.cuda.get_device_name(), flush=True)
    E, H, I, KT = args.experts, 2880, 2880, 4
    be = 32 if E <= 32 else 128
    limit, alpha, eps = 7.0, 1.702, 1e-5
    g = torch.Generator().manual_seed(1)
    x = torch.randn(H, generator=g) * 2
    nw = (1 + 0.1 * torch.randn(H, generator=g)).to(torch.bfloat16)
    wr = (torch.randn(E, H, generator=g) * 0.05).to(torch.bfloat16)
    br = (torch.randn(E, generator=g) * 0.1).to(torch.bfloat16)
    q1, s1, b1 = experts(E, 2 * I, H, 2)
    q2, s2, b2 = experts(E, H, I, 3)
    d = {k: t.to(dev) for k, t in dict(x=x, nw=nw, wr=wr, br=br, q1=q1, s1=s1, b1=b1, q2=q2, s2=s2, b2=b2).items()}
    logits = torch.zeros(E, device=dev)
    act = torch.zeros(KT, I, device=dev)
    part = torch.zeros(KT * 4, H, device=dev)
    count = torch.zeros((H + 15) // 16, dtype=torch.int32, device=dev)
    route_ids = torch.zeros(KT, dtype=torch.int32, device=dev)   # mlp1's routing, read by mlp2
    route_u = torch.zeros(KT, device=dev)
    hb = lambda K: (K // 32 + 3) // 4 * 512  # noqa: E731
    xh = torch.zeros(hb(H) // 2 + 64, dtype=torch.bfloat16, device=dev)
    acth = torch.zeros(KT * hb(I) // 2 + 64, dtype=torch.bfloat16, device=dev)
    xo = torch.zeros(H, device=dev)

    # float64 reference, experts chosen from the kernel's own logits (fp32 near-ties would otherwise differ)
    xn = x.double() / torch.sqrt((x.double() ** 2).mean() + eps) * nw.double()

    cache = {}

    def expert(e):
        if e not in cache:
            w1, w2 = dequant(q1, s1, e), dequant(q2, s2, e)
            cache[e] = (w1 @ xn + b1[e].double(), w2, w2.abs())
        return cache[e]

    def reference(lg):
        top = torch.topk(lg.double().cpu(), KT)
        wts = torch.softmax(top.values, 0)
        out = x.double().clone()
        scale = x.double().abs().clone()
        for j, e in enumerate(top.indices.tolist()):
            u, w2, w2a = expert(e)
            gt, up = u[0::2].clamp(max=limit), u[1::2].clamp(-limit, limit)
            a = (up + 1) * gt * torch.sigmoid(alpha * gt)
            out += wts[j] * (w2 @ a + b2[e].double())
            scale += wts[j] * (w2a @ a.abs() + b2[e].double().abs())
        return out, scale

    class Rows(list):
        def append(self, r):
            super().append(r)
            print(f"{r[0]:<44} err={r[1]:9.2e} {r[2]:9.2f} us {r[3]:8.0f} GB/s", flush=True)

    rows = Rows()
    mb1 = KT * 2 * I * (H // 32) * 17
    mb2 = KT * H * (I // 32) * 17

    def old_path():
        xo.copy_(d["x"])
        launch("linear_gemv_m1_norm_bias", (triton.cdiv(E, V["linear_gemv_m1_norm_bias"].constexprs["BLOCK_N"]),),
               xo, xo, d["nw"], d["wr"], d["br"], logits, 1, E, H, E, eps)
        m1 = f"moe_mlp1_route_gemv1_e{be}"
        launch(m1, (KT, triton.cdiv(2 * I, V[m1].constexprs["BLOCK_N"])), xo, d["nw"], eps, logits, E, d["q1"],
               d["s1"], d["b1"], act, 1, H, I, KT, limit, alpha)
        m2 = f"moe_mlp2_route_split_e{be}"
        launch(m2, (KT, triton.cdiv(H, V[m2].constexprs["BLOCK_N"]), V[m2].constexprs["SPLIT"]), act, logits, E,
               d["q2"], d["s2"], d["b2"], part, count, xo, H, I, KT)

    def new_path(t1=None, t2=None):
        xo.copy_(d["x"])
        launch("moe_router_hilo", (triton.cdiv(E, V["moe_router_hilo"].constexprs["BLOCK_N"]),), xo, d["nw"], eps,
               d["wr"], d["br"], logits, xh, E, H)
        new_mlp1(t1)
        new_mlp2(t2)

    def tile_args(t, name):
        if t is None:
            t = moe_mma.MLP1_TILE if name == "mlp1" else moe_mma.MLP2_TILE
        rt = t[3] if len(t) > 3 else 1
        return t[0] * rt, dict(W_R=t[0], W_K=t[1], STAGES=t[2], RT=rt, num_warps=t[0] * t[1])

    def new_mlp1(t1=None):
        tiles, o = tile_args(t1, "mlp1")
        launch(f"moe_mlp1_route_mma_e{be}", (KT, triton.cdiv(2 * I // 16, tiles)), xh, logits, E, d["q1"], d["s1"],
               d["b1"], acth, route_ids, route_u, H, I, KT, limit, alpha, **o)

    def new_mlp2(t2=None):
        tiles, o = tile_args(t2, "mlp2")
        launch("moe_mlp2_route_mma", (KT, triton.cdiv(H // 16, tiles)), acth, route_ids, route_u, d["q2"], d["s2"],
               d["b2"], part, count, xo, H, I, KT, **o)

    base = None
    if args.baseline:
        import importlib.util
        spec = importlib.util.spec_from_file_location("moe_mma_baseline", args.baseline)
        base = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(base)

    def base_mlp1():
        t = base.MLP1_TILE
        base.moe_mlp1_route_mma[(KT, triton.cdiv(2 * I // 16, t[0]))](
            xh, logits, E, d["q1"], d["s1"], d["b1"], acth, H, I, KT, limit, alpha, W_R=t[0], W_K=t[1], STAGES=t[2],
            BLOCK_E=be, num_warps=t[0] * t[1], num_stages=1)

    def base_mlp2():
        t = base.MLP2_TILE
        base.moe_mlp2_route_mma[(KT, triton.cdiv(H // 16, t[0]))](
            acth, logits, E, d["q2"], d["s2"], d["b2"], part, count, xo, H, I, KT, W_R=t[0], W_K=t[1], STAGES=t[2],
            BLOCK_E=be, num_warps=t[0] * t[1], num_stages=1)

    for name, path in (("old", old_path), ("new", new_path)):
        path()
        torch.cuda.synchronize()
        ref, scale = reference(logits)
        err = ((xo.double().cpu() - ref).abs() / scale).max().item()
        us = bench(path)
        rows.append((f"{name} path (3 launches + copy of x)", err, us, (mb1 + mb2) / (us * 1e-6) / 1e9))
    # each launch alone
    new_path()
    rows.append(("  router gemv (old)", 0, bench(lambda: launch(
        "linear_gemv_m1_norm_bias", (triton.cdiv(E, 2),), xo, xo, d["nw"], d["wr"], d["br"], logits, 1, E, H, E,
        eps)), 0))
    rows.append(("  moe_router_hilo", 0, bench(lambda: launch(
        "moe_router_hilo", (triton.cdiv(E, 2),), xo, d["nw"], eps, d["wr"], d["br"], logits, xh, E, H)), 0))
    m1 = f"moe_mlp1_route_gemv1_e{be}"
    us = bench(lambda: launch(m1, (KT, triton.cdiv(2 * I, V[m1].constexprs["BLOCK_N"])), xo, d["nw"], eps, logits, E,
                              d["q1"], d["s1"], d["b1"], act, 1, H, I, KT, limit, alpha))
    rows.append((f"  {m1}", 0, us, mb1 / (us * 1e-6) / 1e9))
    m2 = f"moe_mlp2_route_split_e{be}"
    us = bench(lambda: launch(m2, (KT, triton.cdiv(H, V[m2].constexprs["BLOCK_N"]), V[m2].constexprs["SPLIT"]), act,
                              logits, E, d["q2"], d["s2"], d["b2"], part, count, xo, H, I, KT))
    rows.append((f"  {m2}", 0, us, mb2 / (us * 1e-6) / 1e9))
    if base is not None:
        for rep in range(2):
            xo.copy_(d["x"])
            launch("moe_router_hilo", (triton.cdiv(E, V["moe_router_hilo"].constexprs["BLOCK_N"]),), xo, d["nw"],
                   eps, d["wr"], d["br"], logits, xh, E, H)
            base_mlp1()
            base_mlp2()
            torch.cuda.synchronize()
            ref, scale = reference(logits)
            err = ((xo.double().cpu() - ref).abs() / scale).max().item()
            us = bench(base_mlp1)
            rows.append((f"  baseline mlp1 {base.MLP1_TILE}", err, us, mb1 / (us * 1e-6) / 1e9))
            us = bench(base_mlp2)
            rows.append((f"  baseline mlp2 {base.MLP2_TILE}", err, us, mb2 / (us * 1e-6) / 1e9))
    default_tiles = [(4, 1, 4, 1), (1, 1, 4, 1), (1, 1, 6, 1), (2, 1, 4, 1), (1, 2, 4, 1), (2, 2, 4, 1),
                     (1, 4, 4, 1), (4, 1, 6, 1), (1, 1, 4, 2), (1, 1, 6, 2), (2, 1, 4, 2), (1, 2, 4, 2),
                     (2, 2, 2, 2), (1, 2, 6, 2)]
    if args.tiles is None:
        tiles = [None]
    elif args.tiles:
        tiles = [None] + [tuple(int(v) for v in t.split(",")) for t in args.tiles]
    else:
        tiles = [None] + default_tiles
    for t in tiles:
        print("tile", ",".join(map(str, t)) if t else "built", flush=True)
        new_path(t, t)
        torch.cuda.synchronize()
        ref, scale = reference(logits)
        err = ((xo.double().cpu() - ref).abs() / scale).max().item()
        us = bench(lambda: new_mlp1(t))
        rows.append((f"  moe_mlp1_route_mma {t or moe_mma.MLP1_TILE}", err, us, mb1 / (us * 1e-6) / 1e9))
        us = bench(lambda: new_mlp2(t))
        rows.append((f"  moe_mlp2_route_mma {t or moe_mma.MLP2_TILE}", err, us, mb2 / (us * 1e-6) / 1e9))
    print("done", flush=True)


if __name__ == "__main__":
    main()
