"""A lock-step emulator of warps running the PTX loops that triton_kernels/ generate (moe_gemm_mma's
_group_loop_ptx and moe_mma's _mma_loop_ptx; a CTA's warps share shared memory and meet at bar.sync), so that the CPU tests check the loop itself, not only the plain-Triton stand-in
the interpreter runs instead of inline assembly.

What it models, as the PTX ISA defines them: the 32 lanes in lock step with divergent branches (the lanes at the
lowest program counter step together; warp-collective instructions require all lanes), 32- and 64-bit integer
arithmetic, prmt, setp / selp and predicated instructions, ld.global / ld.shared, ldmatrix .x4 (lane l gets word
l % 4 of row l / 4 of each 8x8 matrix, whose row addresses come from lanes 8j .. 8j + 7), mma.sync m16n8k16 with
bf16 inputs and f32 accumulators (its A, B, C and D fragment layouts; products and sums in float64, rounded to
float32 once), fma.rn.f32, and cp.async: a copy's destination holds random bytes from its issue until the
cp.async.wait_group / wait_all that retires its group, and every global read and shared write is bounds-checked
against the regions the test declares. Any other instruction raises NotImplementedError.
"""

from __future__ import annotations

import re

import numpy as np

M32 = 0xFFFFFFFF
def f2b(a): return np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
def b2f(a): return (np.asarray(a, np.uint64) & M32).astype(np.uint32).view(np.float32)
def bf16_to_f(h): return (np.asarray(h, np.uint64).astype(np.uint32) << 16).view(np.float32).astype(np.float64)

class Warp:
    """One warp (warp_id: its index in the CTA, for %tid.x) over global memory gmem (uint8; addresses are
    indices; valid: [(lo, hi)] byte ranges it may read) with the asm operands params ({index: value or
    per-lane values})."""

    def __init__(self, ptx, warp_id, gmem, params, poison_rng, valid=(), smem=None, warps=1):
        self.lines = []
        self.labels = {}
        for l in ptx.splitlines():
            l = l.strip()
            if not l or l in "{}" or l.startswith(".shared") or l.startswith(".reg"):
                continue
            if l.endswith(":"):
                self.labels[l[:-1]] = len(self.lines); continue
            self.lines.append(l.rstrip(";"))
        m = re.search(r"\.shared \.align 16 \.b8 (\w+)\[(\d+)\]", ptx)
        self.smem_name = m.group(1)                      # the loop's one static array, at shared address 0
        if smem is None:                                 # a CTA's warps share one array (see run_cta)
            smem = poison_rng.integers(0, 256, int(m.group(2))).astype(np.uint8)
        self.smem = smem
        self.ntid = 32 * warps
        self.g = gmem  # np.uint8 array, addresses = indices
        self.r = {}
        self.tid = np.arange(32, dtype=np.uint64) + 32 * warp_id
        for i, v in params.items():
            self.r[f"${i}"] = np.full(32, v, np.uint64) if np.isscalar(v) else np.asarray(v, np.uint64)
        self.pending = [[] for _ in range(32)]
        self.groups = [[] for _ in range(32)]
        self.rng = poison_rng
        self.steps = 0
        self.valid = list(valid)

    def val(self, op):
        op = op.strip()
        if op == "%tid.x": return self.tid.copy()
        if op == "%ntid.x": return np.full(32, self.ntid, np.uint64)
        if op == self.smem_name: return np.zeros(32, np.uint64)
        if op.startswith("0f"): return np.full(32, int(op[2:], 16), np.uint64)
        if op.startswith("0x"): return np.full(32, int(op, 16), np.uint64)
        if re.fullmatch(r"-?\d+", op): return np.full(32, int(op) & 0xFFFFFFFFFFFFFFFF, np.uint64)
        return self.r[op].copy()

    def addr(self, op):
        m = re.fullmatch(r"\[([^\]+]+)(\+(\d+))?\]", op.strip())
        a = self.val(m.group(1))
        return a + (int(m.group(3)) if m.group(3) else 0)

    def set(self, name, v, pred=None):
        if pred is None and getattr(self, 'active', None) is not None and not self.active.all():
            pred = self.active
        v = np.asarray(v, np.uint64)
        if pred is None:
            self.r[name] = v.copy()
        else:
            old = self.r.get(name, np.zeros(32, np.uint64))
            self.r[name] = np.where(pred, v, old)

    def apply_groups(self, keep):
        for l in range(32):
            gs = self.groups[l]
            while len(gs) > keep:
                for dst, data in gs.pop(0):
                    self.smem[dst:dst + 16] = data

    def run(self, max_steps=10**7):
        """Runs to the end (True) or to the next bar.sync (False: run again after the CTA's other warps got
        there; run_cta does that)."""
        if not hasattr(self, "pcs"):
            self.pcs = np.zeros(32, np.int64)
        pcs = self.pcs
        n = len(self.lines)
        while (pcs < n).any():
            self.steps += 1
            assert self.steps < max_steps
            pc = pcs.min()
            active = pcs == pc
            line = self.lines[pc]
            pred = active.copy()
            if line.startswith("@"):
                p, line = line.split(None, 1)
                neg = p[1] == "!"
                pv = self.r[p[2:] if neg else p[1:]].astype(bool)
                pred &= (~pv if neg else pv)
            self.active = active
            pcs[active] += 1
            parts = line.split(None, 1)
            opc = parts[0]
            args = []
            if len(parts) > 1:
                # split on commas outside braces/brackets
                depth = 0; cur = ""
                for ch in parts[1]:
                    if ch in "{[": depth += 1
                    if ch in "}]": depth -= 1
                    if ch == "," and depth == 0:
                        args.append(cur.strip()); cur = ""
                    else:
                        cur += ch
                if cur.strip(): args.append(cur.strip())
            if opc in ("bra", "bra.uni"):
                if opc == "bra.uni":                     # the guard must be the same in every active lane
                    assert not pred.any() or (pred == active).all(), ("divergent bra.uni", line)
                pcs[pred] = self.labels[args[0]]
                continue
            sync = opc.startswith(("bar.warp", "ldmatrix", "mma", "cp.async.wait", "cp.async.commit"))
            if sync or opc.startswith(("ld.global", "ld.shared")):
                assert active.all(), ("not converged", line)
            if opc == "bar.warp.sync":
                continue
            if opc == "bar.sync":
                assert active.all(), ("not converged", line)
                return False
            if opc.startswith("cp.async.commit_group"):
                for l in range(32):
                    self.groups[l].append(self.pending[l]); self.pending[l] = []
                continue
            if opc.startswith("cp.async.wait_group"):
                self.apply_groups(int(args[0])); continue
            if opc.startswith("cp.async.wait_all"):
                self.apply_groups(0); continue
            if opc.startswith("cp.async"):
                dst = self.addr(args[0]); src = self.addr(args[1])
                for l in range(32):
                    if not pred[l]: continue
                    d, s = int(dst[l]), int(src[l])
                    assert d % 16 == 0 and s % 16 == 0, "misaligned cp.async"
                    assert 0 <= d and d + 16 <= self.smem.size, ("smem OOB", d)
                    assert self.ok_g(s, 16), ("gmem OOB cp.async", s)
                    self.pending[l].append((d, self.g[s:s + 16].copy()))
                    # in flight: the destination holds garbage until the wait
                    self.smem[d:d + 16] = self.rng.integers(0, 256, 16)
                continue
            self.active = pred
            a = args
            mask = active
            if opc in ("mov.u32", "mov.b32"):
                self.set(a[0], self.val(a[1]) & M32)
            elif opc == "and.b32":
                self.set(a[0], self.val(a[1]) & self.val(a[2]))
            elif opc == "shr.u32":
                self.set(a[0], (self.val(a[1]) & M32) >> self.val(a[2]))
            elif opc == "shl.b32":
                self.set(a[0], (self.val(a[1]) << self.val(a[2])) & M32)
            elif opc == "add.u32":
                self.set(a[0], (self.val(a[1]) + self.val(a[2])) & M32)
            elif opc == "sub.u32":
                self.set(a[0], (self.val(a[1]) - self.val(a[2])) & M32)
            elif opc == "add.f32":
                x, y = (b2f(self.val(v)).astype(np.float32) for v in a[1:3])
                self.set(a[0], f2b(x + y))
            elif opc == "cvt.u32.u64":
                self.set(a[0], self.val(a[1]) & M32)
            elif opc == "mul.wide.s32":
                x = (self.val(a[1]) & M32).astype(np.int64)
                x = np.where(x >= 2 ** 31, x - 2 ** 32, x)
                y = (self.val(a[2]) & M32).astype(np.int64)
                y = np.where(y >= 2 ** 31, y - 2 ** 32, y)
                self.set(a[0], (x * y).astype(np.uint64))
            elif opc == "or.pred":
                self.set(a[0], (self.r[a[1]].astype(bool) | self.r[a[2]].astype(bool)).astype(np.uint64))
            elif opc == "ld.shared.v4.u32":
                ad = self.addr(a[1]); regs = [x.strip() for x in a[0].strip("{}").split(",")]
                outs = np.zeros((4, 32), np.uint64)
                for l in range(32):
                    if not pred[l]: continue
                    d = int(ad[l]); assert d % 16 == 0 and 0 <= d and d + 16 <= self.smem.size, ("smem OOB", d)
                    outs[:, l] = self.smem[d:d + 16].view(np.uint32)
                for i, rn in enumerate(regs): self.set(rn, outs[i])
            elif opc == "add.s64":
                self.set(a[0], self.val(a[1]) + self.val(a[2]))
            elif opc == "min.u32":
                self.set(a[0], np.minimum(self.val(a[1]) & M32, self.val(a[2]) & M32))
            elif opc == "mad.wide.u32":
                self.set(a[0], (self.val(a[1]) & M32) * (self.val(a[2]) & M32) + self.val(a[3]))
            elif opc == "mul.wide.u32":
                self.set(a[0], (self.val(a[1]) & M32) * (self.val(a[2]) & M32))
            elif opc == "mad.lo.u32":
                self.set(a[0], ((self.val(a[1]) * self.val(a[2])) + self.val(a[3])) & M32)
            elif opc == "mul.lo.u32":
                self.set(a[0], (self.val(a[1]) * self.val(a[2])) & M32)
            elif opc == "cvt.u64.u32":
                self.set(a[0], self.val(a[1]) & M32)
            elif opc.startswith("setp."):
                cmp = opc.split(".")[1]
                x, y = self.val(a[1]) & M32, self.val(a[2]) & M32
                self.set(a[0], {"ge": x >= y, "lt": x < y, "ne": x != y, "eq": x == y}[cmp].astype(np.uint64))
            elif opc == "selp.b32":
                p = self.r[a[3]].astype(bool)
                self.set(a[0], np.where(p, self.val(a[1]), self.val(a[2])) & M32)
            elif opc == "prmt.b32":
                x = self.val(a[1]) & M32; y = self.val(a[2]) & M32; sel = int(a[3], 16)
                src = [(x >> (8 * i)) & 0xFF for i in range(4)] + [(y >> (8 * i)) & 0xFF for i in range(4)]
                out = np.zeros(32, np.uint64)
                for i in range(4):
                    out |= src[(sel >> (4 * i)) & 7] << np.uint64(8 * i)
                self.set(a[0], out)
            elif opc == "ld.shared.u8":
                ad = self.addr(a[1])
                assert (ad < self.smem.size).all()
                self.set(a[0], self.smem[ad.astype(np.int64)].astype(np.uint64))
            elif opc == "ld.global.nc.v4.u32":
                ad = self.addr(a[1]); regs = [x.strip() for x in a[0].strip("{}").split(",")]
                outs = np.zeros((4, 32), np.uint64)
                for l in range(32):
                    s = int(ad[l]); assert s % 16 == 0 and self.ok_g(s, 16), ("gmem OOB ld x", s)
                    outs[:, l] = self.g[s:s + 16].view(np.uint32)
                for i, rn in enumerate(regs): self.set(rn, outs[i])
            elif opc.startswith("ldmatrix"):
                ad = self.addr(a[1]); regs = [x.strip() for x in a[0].strip("{}").split(",")]
                for j, rn in enumerate(regs):
                    out = np.zeros(32, np.uint64)
                    for l in range(32):
                        rowaddr = int(ad[8 * j + (l >> 2)])
                        assert rowaddr % 16 == 0
                        out[l] = self.smem[rowaddr:rowaddr + 16].view(np.uint32)[l & 3]
                    self.set(rn, out)
            elif opc.startswith("mma.sync"):
                d = [x.strip() for x in a[0].strip("{}").split(",")]
                ar = [self.val(x) for x in a[1].strip("{}").split(",")]
                br = [self.val(x) for x in a[2].strip("{}").split(",")]
                cr = [self.val(x) for x in a[3].strip("{}").split(",")]
                A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
                for l in range(32):
                    g, t = l >> 2, l & 3
                    for ri, (row, col) in enumerate([(g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8)]):
                        w = int(ar[ri][l]); A[row, col] = bf16_to_f(w & 0xFFFF); A[row, col + 1] = bf16_to_f(w >> 16)
                    for ri, k in enumerate([2 * t, 2 * t + 8]):
                        w = int(br[ri][l]); B[k, g] = bf16_to_f(w & 0xFFFF); B[k + 1, g] = bf16_to_f(w >> 16)
                    for ri, (row, col) in enumerate([(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]):
                        C[row, col] = b2f(cr[ri][l])
                D = (A @ B + C).astype(np.float32)
                for ri in range(4):
                    out = np.zeros(32, np.uint64)
                    for l in range(32):
                        g, t = l >> 2, l & 3
                        row, col = [(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)][ri]
                        out[l] = int(f2b(D[row, col]))
                    self.set(d[ri], out)
            elif opc == "fma.rn.f32":
                x, y, z = (b2f(self.val(v)).astype(np.float32) for v in a[1:4])
                self.set(a[0], f2b(x * y + z))
            else:
                raise NotImplementedError(line)
        return True

    def ok_g(self, s, n):
        return any(lo <= s and s + n <= hi for lo, hi in self.valid)


def run_cta(warps):
    """Runs a CTA's warps (sharing one shared-memory array) to the end, meeting at every bar.sync."""
    done = [False] * len(warps)
    while not all(done):
        done = [d or w.run() for d, w in zip(done, warps)]


def global_memory(rng, arrays, gap=4096):
    """Lays the named numpy arrays out in one global memory (16-byte aligned, between gaps of random bytes the
    loop must not read): (gmem uint8, {name: address}, the valid byte ranges for Warp)."""
    off, at = gap, {}
    for name, arr in arrays.items():
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        at[name] = (off, raw)
        off += (raw.size + 15) // 16 * 16 + gap
    gmem = rng.integers(0, 256, off + gap).astype(np.uint8)
    for o, raw in at.values():
        gmem[o:o + raw.size] = raw
    return gmem, {name: o for name, (o, _) in at.items()}, [(o, o + raw.size) for o, raw in at.values()]
