"""The grouped MXFP4 expert products of decode batches (5 to 128 tokens) on the
tensor cores: each weight decoded once, straight into an mma operand register,
and multiplied with up to 16 tokens of its expert.

Why: moe.py's moe_mlp1_gemm / moe_mlp2_gemm (tl.dot_scaled on 16-token tiles)
issue ~440 instructions per KB of weights and warp, twice what an H200 SM can
issue while its share of the memory bandwidth delivers that KB, so at 64
sequences they ran near 1.4 TB/s and held 7.5 of a 10.2 ms step
(bench/gpu/NOTES.md). Here a warp takes 16 weight rows: ldmatrix hands each lane
one 32-bit word (8 weights) of two rows, 13 integer instructions make it four
bf16 pairs (moe_mma.py's exact decode), and two m16n8k16 mma per block of 32
weights and group of 8 tokens multiply them; the block's E8M0 scale multiplies
the block's partial sums in fp32. 218 instructions per KB and warp with 9-16
tokens, 189 with up to 8 (bench/gpu/sass_loops.py); measured 2.3 TB/s at 64
tokens (run 52), where Nsight Compute found the issue slots 62% busy with 4.6
warps per scheduler (registers limit a SM to 5 programs of 4 warps).

Layout of one warp's products (lane = 4 g + t; a tile of 16 weight rows
r0 .. r0 + 15; mma row g is weight row r0 + 2g, row g + 8 is r0 + 2g + 1, so a
lane ends with both rows of a gate/up pair):
  * A (weights): the warp streams "units" of 4 blocks (128 weights) of its 16
    rows through a shared-memory ring (cp.async, STAGES units in flight; each
    16-byte block row at a swizzled place so that ldmatrix reads without bank
    conflicts). Lane (g, t) gets word t of a block of rows 2g and 2g + 1:
    elements 8t .. 8t + 7, decoded into the pairs (8t + j, 8t + j + 4).
  * B (activations, the xg form of elementwise.py: bf16 of 2^64 x with each
    group of 8 in the order 0 4 1 5 2 6 3 7): lane (g, t) loads the 16 bytes of
    elements 8t .. 8t + 7 of a block for token g of its group, which are exactly
    its B pairs for the block's two mma. Read from global memory (L1 and L2: the
    tile's few tokens are read by every program of the tile), a unit ahead: a
    block's registers are reloaded with the next unit's block as soon as its mma
    have read them.
  * D of a block's two mma (per group of 8 tokens: rows 2g, 2g + 1, tokens 2t,
    2t + 1) times 2^(s - 65) (s = the row's scale byte; 2^-126 from the decode,
    2^64 from x) is added into the fp32 accumulators: exact for s <= 192 (193 and
    up overflow to inf, as in moe.py's fp32 kernels).
The kernels around the loop (Triton) gather the tile's tokens, add the bias, and
write their results: mlp1 applies swiglu to each lane's gate/up pair and writes
the activations in the xg form (mlp2's input); mlp2 writes its fp32 rows.

Contracts (tiles from moe.py's moe_sort_m16: (expert, first grouped row, count
<= 16); P = T K_TOP pairs, pair p is token p // K_TOP):
  moe_mlp1_gemm_mma(xg, pair_order, tiles, num_tiles, blocks, scales, bias, actg, H, I, K_TOP, limit, alpha)
                                                      grid (max_tiles, cdiv(2I / 16, W))
      xg bf16 [T, H] (xg form); actg bf16 [P, I] (xg form) in grouped order:
      actg[g] = swiglu(mlp1_e(x[pair_order[g] // K_TOP])).
  moe_mlp2_gemm_mma(actg, tiles, num_tiles, blocks, scales, bias, y2, H, I)
                                                      grid (max_tiles, cdiv(H / 16, W))
      y2 fp32 [P, H] in grouped order: y2[g] = mlp2_e(act[g]) (moe.py's moe_combine adds them into x).
Programs whose tile index >= num_tiles[0] return at once. Launch requirements:
H and I multiples of 32, at most K_MAX; pointers 16-byte aligned.

Under Triton's interpreter the loop is replaced by the same sums in plain Triton
(exact decode, x read back from the xg form), so the interpreter tests check
everything around it; the PTX itself runs in tests/ptx_emu.py's emulator of one
warp on the CPU (test_moe_gemm_mma_ptx), and on a GPU in the op harness and
tests/test_cuda.py.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

from aot import Variant, pdl_begin
from elementwise import XG_PRESCALE, xg_offset
from moe import _swiglu, _tile
from moe_mma import K_MAX, decode_fp4_ptx

_INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")

SC_BYTES = 16 * K_MAX // 32  # per warp: the scale bytes of its 16 rows


def _smem_bytes(stages: int, warps: int) -> int:
    return warps * (SC_BYTES + stages * 1024)


def _group_loop_ptx(stages: int, warps: int) -> str:
    """The per-lane loop as PTX for a warp of 16 weight rows and up to 16 tokens.

    Operands: $0 .. $7 = the accumulators (f32 out): group n (tokens 8n ..) at $4n .. $4n + 3 = (row 2g, token
    2t), (row 2g, token 2t + 1), (row 2g + 1, token 2t), (row 2g + 1, token 2t + 1); then (inputs) the tile's
    first weight row (block 0 of row r0, u64); the scales of row r0 (u64); the lane's token row of group 0 and of
    group 1 in the xg form (u64, bytes); blocks per row KB (u32); two groups (u32, nonzero when the tile has more
    than 8 tokens: otherwise group 1 is not computed and its accumulators stay 0)."""
    P = stages
    ROW, SC, X0, X1, KB, NG2 = (f"${8 + i}" for i in range(6))
    slot0 = SC_BYTES
    warp_bytes = SC_BYTES + P * 1024
    total = _smem_bytes(P, warps)
    assert total <= 48 * 1024, "static shared memory is limited to 48 KB"
    L = []
    a = L.append
    a("{")
    a(f".shared .align 16 .b8 gon_gmma_smem[{total}];")
    a(".reg .pred %pe, %pl, %p2, %pk;")
    a(".reg .b32 %tdx, %lane, %w, %g, %t, %rs, %kb1, %nu, %u, %b0, %z, %f, %sm, %ws, %as, %aend, %c, %dst, %cpo;")
    a(".reg .b32 %la, %lb, %ss0, %ss1, %z0, %z1, %s0, %s1, %f0, %f1, %zf, %kb, %kbx, %kbn, %w2, %v2;")
    a(".reg .b32 %m<8>, %ra<4>, %x<32>, %dd<8>;")
    a(".reg .b64 %ad, %src, %row0, %row1, %xp0, %xp1, %xn0, %xn1;")
    a("mov.u32 %tdx, %tid.x;")
    a("and.b32 %lane, %tdx, 31;")
    a("shr.u32 %w, %tdx, 5;")
    a("shr.u32 %g, %lane, 2;")
    a("and.b32 %t, %lane, 3;")
    a(f"shl.b32 %rs, {KB}, 4;")                    # row stride in bytes
    a(f"sub.u32 %kb1, {KB}, 1;")
    a(f"add.u32 %nu, {KB}, 3;")
    a("shr.u32 %nu, %nu, 2;")                      # units of 4 blocks
    a("shl.b32 %z, %g, 1;")
    a(f"mad.wide.u32 %row0, %z, %rs, {ROW};")      # row r0 + 2g
    a("cvt.u64.u32 %ad, %rs;")
    a("add.s64 %row1, %row0, %ad;")                # row r0 + 2g + 1
    a("mov.u32 %sm, gon_gmma_smem;")
    a(f"mad.lo.u32 %ws, %w, {warp_bytes}, %sm;")   # this warp's region: scales, then the ring
    # the scale bytes of the 16 rows: 16 KB contiguous bytes (16-byte aligned), KB pieces of 16 bytes
    a("mov.u32 %c, %lane;")
    a("GON_GMMA_S:")
    a(f"setp.ge.u32 %pe, %c, {KB};")
    a("@%pe bra GON_GMMA_S_END;")
    a("mad.lo.u32 %dst, %c, 16, %ws;")
    a(f"mad.wide.u32 %src, %c, 16, {SC};")
    a("cp.async.cg.shared.global [%dst], [%src], 16;")
    a("add.u32 %c, %c, 32;")
    a("bra.uni GON_GMMA_S;")
    a("GON_GMMA_S_END:")
    a("cp.async.commit_group;")
    a("shl.b32 %z, %g, 1;")
    a(f"mad.lo.u32 %ss0, %z, {KB}, %ws;")          # scale bytes of row 2g
    a(f"add.u32 %ss1, %ss0, {KB};")                # row 2g + 1
    # where lane (g, t) puts block t of a unit (row 2g; row 2g + 1 at +512): 16-byte piece 4g + ((t + g / 2) & 3)
    a("shr.u32 %z, %g, 1;")
    a("add.u32 %z, %z, %t;")
    a("and.b32 %z, %z, 3;")
    a("shl.b32 %c, %g, 2;")
    a("add.u32 %z, %z, %c;")
    a("shl.b32 %cpo, %z, 4;")
    # ldmatrix x4: lane i gives row i & 7 of matrix i >> 3 = (row 2r + (i >> 3 & 1), block c0 + (i >> 4))
    a("shr.u32 %c, %lane, 3;")
    a("and.b32 %z, %lane, 7;")
    a("and.b32 %f, %c, 1;")
    a("shl.b32 %f, %f, 9;")
    a("shr.u32 %c, %c, 1;")
    a("shr.u32 %b0, %z, 1;")
    a("add.u32 %b0, %b0, %c;")
    a("shl.b32 %z, %z, 2;")
    a("and.b32 %la, %b0, 3;")
    a("add.u32 %la, %la, %z;")
    a("shl.b32 %la, %la, 4;")
    a("add.u32 %la, %la, %f;")                     # blocks 0, 1 of a unit
    a("add.u32 %b0, %b0, 2;")
    a("and.b32 %lb, %b0, 3;")
    a("add.u32 %lb, %lb, %z;")
    a("shl.b32 %lb, %lb, 4;")
    a("add.u32 %lb, %lb, %f;")                     # blocks 2, 3
    a(f"add.u32 %as, %ws, {slot0};")
    a(f"add.u32 %aend, %as, {P * 1024};")
    a("mul.wide.u32 %ad, %t, 16;")
    a(f"add.s64 %xp0, {X0}, %ad;")                 # the lane's 16 bytes of each block: elements 8t .. 8t + 7
    a(f"add.s64 %xp1, {X1}, %ad;")

    def copy_unit(unit, slot):
        a(f"setp.lt.u32 %pl, {unit}, %nu;")
        a(f"shl.b32 %b0, {unit}, 2;")
        a("add.u32 %b0, %b0, %t;")
        a("min.u32 %b0, %b0, %kb1;")               # the last unit may pass K: re-read the last block (scaled by 0)
        a(f"add.u32 %dst, {slot}, %cpo;")
        a("mad.wide.u32 %ad, %b0, 16, %row0;")
        a("@%pl cp.async.cg.shared.global.L2::256B [%dst], [%ad], 16;")
        a("add.u32 %dst, %dst, 512;")
        a("mad.wide.u32 %ad, %b0, 16, %row1;")
        a("@%pl cp.async.cg.shared.global.L2::256B [%dst], [%ad], 16;")
        a("cp.async.commit_group;")

    for s in range(P):
        a(f"mov.u32 %u, {s};")
        a(f"add.u32 %z, %as, {s * 1024};")
        copy_unit("%u", "%z")
    a(f"cp.async.wait_group {P};")                 # the scales
    a("bar.warp.sync 0xffffffff;")
    a("mov.b32 %zf, 0;")
    for i in range(8):
        a(f"mov.b32 ${i}, 0f00000000;")

    def decode(dst, src, hi_nibbles):
        L.extend(decode_fp4_ptx(dst, src, hi_nibbles))

    def load_x_first(ng):
        """x of unit 0 (blocks past K re-read the last one: unit 0 may be the tail)."""
        for n in range(ng):
            for c in range(4):
                r = 16 * n + 4 * c
                a(f"min.u32 %kbx, %kb1, {c};")
                a("mul.wide.u32 %ad, %kbx, 64;")
                a(f"add.s64 %src, {'%xp0' if n == 0 else '%xp1'}, %ad;")
                a(f"ld.global.nc.v4.u32 {{%x{r}, %x{r + 1}, %x{r + 2}, %x{r + 3}}}, [%src];")

    def body(ng, tail, prefetch):
        """One unit (blocks 4u .. 4u + 3) for ng groups of 8 tokens, whose x is in the registers already; the tail
        unit scales blocks past K by 0. prefetch ("full", "clamped" or None): as soon as a block's mma have read
        its x registers, they are reloaded with the same block of the next unit (so x's latency from L2 overlaps
        a whole unit's work)."""
        a(f"cp.async.wait_group {P - 1};")
        a("bar.warp.sync 0xffffffff;")             # the unit's pieces, copied by every lane, are visible
        a("shl.b32 %kb, %u, 2;")
        if prefetch:
            a("add.u32 %kbn, %kb, 4;")
            if prefetch == "full":
                a("mul.wide.u32 %ad, %kbn, 64;")
                a("add.s64 %xn0, %xp0, %ad;")
                if ng == 2:
                    a("add.s64 %xn1, %xp1, %ad;")
        a("add.u32 %z, %as, %la;")
        a("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%m0, %m1, %m2, %m3}, [%z];")
        a("add.u32 %z, %as, %lb;")
        a("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%m4, %m5, %m6, %m7}, [%z];")
        a("add.u32 %z0, %ss0, %kb;")
        a("add.u32 %z1, %ss1, %kb;")
        for c in range(4):
            wa, va = f"%m{2 * c}", f"%m{2 * c + 1}"   # word t of rows 2g and 2g + 1, block 4u + c
            a(f"ld.shared.u8 %s0, [%z0+{c}];")
            a(f"ld.shared.u8 %s1, [%z1+{c}];")
            a("min.u32 %f0, %s0, 193;")
            a("mad.lo.u32 %f0, %f0, 8388608, 520093696;")   # (s + 62) << 23: 2^(s - 65)
            a("min.u32 %f1, %s1, 193;")
            a("mad.lo.u32 %f1, %f1, 8388608, 520093696;")
            if tail:
                a(f"add.u32 %kbx, %kb, {c};")
                a(f"setp.lt.u32 %pk, %kbx, {KB};")
                a("selp.b32 %f0, %f0, 0, %pk;")
                a("selp.b32 %f1, %f1, 0, %pk;")
            for half in range(2):   # elements (8t + j, 8t + j + 4): j = 0, 1 first, then j = 2, 3
                if half == 0:
                    sa, sb = wa, va
                else:
                    a(f"prmt.b32 %w2, {wa}, 0, 0x2301;")
                    a(f"prmt.b32 %v2, {va}, 0, 0x2301;")
                    sa, sb = "%w2", "%v2"
                decode("%ra0", sa, False)
                decode("%ra1", sb, False)
                decode("%ra2", sa, True)
                decode("%ra3", sb, True)
                for n in range(ng):
                    r = 16 * n + 4 * c + 2 * half
                    d = ", ".join(f"%dd{4 * n + i}" for i in range(4))
                    cin = "%zf, %zf, %zf, %zf" if half == 0 else d
                    a(f"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d}}}, "
                      f"{{%ra0, %ra1, %ra2, %ra3}}, {{%x{r}, %x{r + 1}}}, {{{cin}}};")
            for n in range(ng):
                r = 16 * n + 4 * c
                if prefetch == "full":
                    a(f"ld.global.nc.v4.u32 {{%x{r}, %x{r + 1}, %x{r + 2}, %x{r + 3}}}, [%xn{n}+{64 * c}];")
                elif prefetch == "clamped":
                    a(f"add.u32 %kbx, %kbn, {c};")
                    a("min.u32 %kbx, %kbx, %kb1;")
                    a("mul.wide.u32 %ad, %kbx, 64;")
                    a(f"add.s64 %src, {'%xp0' if n == 0 else '%xp1'}, %ad;")
                    a(f"ld.global.nc.v4.u32 {{%x{r}, %x{r + 1}, %x{r + 2}, %x{r + 3}}}, [%src];")
                for i in range(4):
                    f = "%f0" if i < 2 else "%f1"
                    a(f"fma.rn.f32 ${4 * n + i}, %dd{4 * n + i}, {f}, ${4 * n + i};")
        if not tail:
            a(f"add.u32 %z, %u, {P};")             # the slot is read: refill it with unit u + P
            copy_unit("%z", "%as")
            a("add.u32 %as, %as, 1024;")
            a("setp.ge.u32 %pe, %as, %aend;")
            a(f"@%pe sub.u32 %as, %as, {P * 1024};")
            a("add.u32 %u, %u, 1;")

    a("mov.u32 %u, 0;")
    a(f"setp.ne.u32 %p2, {NG2}, 0;")
    a("@!%p2 bra GON_GMMA_NG1;")
    for ng in (2, 1):
        a(f"GON_GMMA_NG{ng}:")
        load_x_first(ng)
        a(f"GON_GMMA_LOOP{ng}:")                   # units with a full unit after them
        a("add.u32 %z, %u, 2;")
        a("setp.ge.u32 %pe, %z, %nu;")
        a(f"@%pe bra GON_GMMA_LAST{ng};")
        body(ng, tail=False, prefetch="full")
        a(f"bra.uni GON_GMMA_LOOP{ng};")
        a(f"GON_GMMA_LAST{ng}:")                   # the unit before the tail, if any
        a("add.u32 %z, %u, 1;")
        a("setp.ge.u32 %pe, %z, %nu;")
        a(f"@%pe bra GON_GMMA_TAIL{ng};")
        body(ng, tail=False, prefetch="clamped")
        a(f"GON_GMMA_TAIL{ng}:")
        body(ng, tail=True, prefetch=None)
        a("bra.uni GON_GMMA_END;")
    a("GON_GMMA_END:")
    a("cp.async.wait_all;")
    a("}")
    return "\n".join(L)


_PTX = {(p, w): _group_loop_ptx(p, w) for p in (2, 3, 4, 6, 8) for w in (1, 2, 4, 8) if _smem_bytes(p, w) <= 48 * 1024}


@triton.constexpr_function
def _loop_asm(stages, warps):
    key = (int(stages), int(warps))
    if key not in _PTX:
        raise ValueError(f"moe_gemm_mma: no loop for (STAGES, W) = {key}: its shared memory would pass 48 KB")
    return _PTX[key]


@triton.jit
def _emulated_dot(wrow, srow, xrow, KB):
    """What a lane's accumulator holds, in plain Triton (for the interpreter): sum_k W[row, k] x[tok, k] with
    wrow / srow the lanes' weight row (blocks, scales) and xrow their token's row in the xg form."""
    acc = tl.zeros(wrow.shape, tl.float32)
    kk = tl.arange(0, 32)
    for b in range(0, KB):
        q = tl.load(wrow[:, None] + b * 16 + kk[None, :] // 2).to(tl.int32)
        code = tl.where((kk[None, :] % 2) == 0, q & 15, q >> 4)
        w = ((((code & 7) << 22) | ((code & 8) << 28)).to(tl.float32, bitcast=True))   # FP4 x 2^-126
        xv = tl.load(xrow[:, None] + xg_offset(b * 32 + kk)[None, :]).to(tl.float32)   # 2^64 x
        d = tl.sum(w * xv, axis=1)
        s = tl.load(srow + b).to(tl.int32)
        acc += d * ((tl.minimum(s, 193) + 62) << 23).to(tl.float32, bitcast=True)       # 2^(s - 65)
    return acc


@triton.jit
def _x_row(x_ptr, order_ptr, g0, count, j, K, K_TOP, GATHER: tl.constexpr):
    """The xg row of the tile's token j (j past the tile: its last token): grouped row g0 + j, which is x row
    pair_order[g0 + j] // K_TOP when GATHER (mlp1), the grouped row itself otherwise (mlp2)."""
    r = g0 + tl.minimum(j, count - 1)
    if GATHER:
        r = tl.load(order_ptr + r) // K_TOP
    return x_ptr + r.to(tl.int64) * K


@triton.jit
def _group_products(wrow, srow, x_ptr, order_ptr, g0, count, K, K_TOP, g, t, GATHER: tl.constexpr,
                    W: tl.constexpr, STAGES: tl.constexpr):
    """The 8 accumulators of every lane (see _group_loop_ptx): wrow / srow the warp's tile of 16 weight rows
    (blocks, scales); the tokens of the tile through _x_row."""
    KB = K // 32
    if _INTERPRET:
        r0w = wrow + (2 * g).to(tl.int64) * (KB * 16)
        r1w = r0w + KB * 16
        r0s = srow + (2 * g).to(tl.int64) * KB
        r1s = r0s + KB
        xa = _x_row(x_ptr, order_ptr, g0, count, 2 * t, K, K_TOP, GATHER)
        xb = _x_row(x_ptr, order_ptr, g0, count, 2 * t + 1, K, K_TOP, GATHER)
        xc = _x_row(x_ptr, order_ptr, g0, count, 2 * t + 8, K, K_TOP, GATHER)
        xd = _x_row(x_ptr, order_ptr, g0, count, 2 * t + 9, K, K_TOP, GATHER)
        return (_emulated_dot(r0w, r0s, xa, KB), _emulated_dot(r0w, r0s, xb, KB),
                _emulated_dot(r1w, r1s, xa, KB), _emulated_dot(r1w, r1s, xb, KB),
                _emulated_dot(r0w, r0s, xc, KB), _emulated_dot(r0w, r0s, xd, KB),
                _emulated_dot(r1w, r1s, xc, KB), _emulated_dot(r1w, r1s, xd, KB))
    else:
        x0 = _x_row(x_ptr, order_ptr, g0, count, g, K, K_TOP, GATHER)          # B column g of group 0
        x1 = _x_row(x_ptr, order_ptr, g0, count, g + 8, K, K_TOP, GATHER)      # of group 1
        zero32 = tl.zeros(g.shape, tl.int32)
        args = [wrow.to(tl.int64), srow.to(tl.int64), x0.to(tl.int64), x1.to(tl.int64), KB + zero32,
                (count > 8).to(tl.int32) + zero32]
        return tl.inline_asm_elementwise(_loop_asm(STAGES, W), "=f,=f,=f,=f,=f,=f,=f,=f,l,l,l,l,r,r", args,
                                         dtype=(tl.float32,) * 8, is_pure=False, pack=1)


@triton.jit
def _lanes(R, W: tl.constexpr):
    """Each lane's g and t and its warp's 16-row tile (program_id(1) * W + warp; past the last: the last)."""
    i = tl.arange(0, 32 * W)
    lane = i % 32
    tile = tl.minimum(tl.program_id(1) * W + i // 32, R // 16 - 1).to(tl.int64)
    return lane // 4, lane % 4, tile


@triton.jit
def moe_mlp1_gemm_mma(xg_ptr, pair_order_ptr, tiles_ptr, num_tiles_ptr, blocks_ptr, scales_ptr, bias_ptr, actg_ptr,
                      H, I, K_TOP, limit, alpha, W: tl.constexpr, STAGES: tl.constexpr):
    pdl_begin()
    live, e, g0, count = _tile(tiles_ptr, num_tiles_ptr)
    if live:
        R = 2 * I
        KB = H // 32
        g, t, tile = _lanes(R, W)
        row = tile * 16 + 2 * g                                   # gate row; the up row is row + 1
        b_gate = tl.load(bias_ptr + e * R + row).to(tl.float32)   # before the loop: its latency is hidden
        b_up = tl.load(bias_ptr + e * R + row + 1).to(tl.float32)
        acc = _group_products(blocks_ptr + (e * R + tile * 16) * KB * 16, scales_ptr + (e * R + tile * 16) * KB,
                              xg_ptr, pair_order_ptr, g0, count, H, K_TOP, g, t, 1, W, STAGES)
        col = xg_offset(tile * 8 + g)
        for n in tl.static_range(2):
            for d in tl.static_range(2):
                j = 8 * n + 2 * t + d
                act = _swiglu(acc[4 * n + d] + b_gate, acc[4 * n + 2 + d] + b_up, limit, alpha)
                tl.store(actg_ptr + (g0 + j).to(tl.int64) * I + col, (act * XG_PRESCALE).to(tl.bfloat16),
                         mask=j < count)


@triton.jit
def moe_mlp2_gemm_mma(actg_ptr, tiles_ptr, num_tiles_ptr, blocks_ptr, scales_ptr, bias_ptr, y2_ptr, H, I,
                      W: tl.constexpr, STAGES: tl.constexpr):
    pdl_begin()
    live, e, g0, count = _tile(tiles_ptr, num_tiles_ptr)
    if live:
        KB = I // 32
        g, t, tile = _lanes(H, W)
        row = tile * 16 + 2 * g
        b0 = tl.load(bias_ptr + e * H + row).to(tl.float32)
        b1 = tl.load(bias_ptr + e * H + row + 1).to(tl.float32)
        acc = _group_products(blocks_ptr + (e * H + tile * 16) * KB * 16, scales_ptr + (e * H + tile * 16) * KB,
                              actg_ptr, tiles_ptr, g0, count, I, 1, g, t, 0, W, STAGES)
        for n in tl.static_range(2):
            for d in tl.static_range(2):
                j = 8 * n + 2 * t + d
                out = y2_ptr + (g0 + j).to(tl.int64) * H + row
                tl.store(out, acc[4 * n + d] + b0, mask=j < count)
                tl.store(out + 1, acc[4 * n + 2 + d] + b1, mask=j < count)


# (W warps of 16 rows each, STAGES units of 1 KB in flight per warp). The PTX takes its lane, warp and shared-memory
# region from %tid.x, which relies on Triton's 1-D layout of the [32 W] lane vectors (element i in thread i) and on
# num_warps == W: _variant checks the second.: bench/gpu/kernel_lab.py --only gmma (H200,
# 20b shapes, 64 tokens with random routing, run 52): mlp1 120.7 us (2.34 TB/s of the tiles' weights) and mlp2
# 76.4 us at (4, 4), against 196.3 / 112.0 us for moe.py's tl.dot_scaled 16-row tiles; (4, 6), (8, 3), (2, 8) and
# registers capped at 64-80 (more programs per SM, with spills) within 0-13% slower.
MLP1_TILE = (4, 4)
MLP2_TILE = (4, 4)

def _variant(v: Variant) -> Variant:
    if v.num_warps != v.constexprs["W"]:
        raise ValueError(f"{v.name}: num_warps must equal W (the loop's warps)")
    return v


VARIANTS = [_variant(v) for v in [
    Variant(name="moe_mlp1_gemm_mma", kernel=moe_mlp1_gemm_mma,
            signature={"xg_ptr": "*bf16", "pair_order_ptr": "*i32", "tiles_ptr": "*i32", "num_tiles_ptr": "*i32",
                       "blocks_ptr": "*u8", "scales_ptr": "*u8", "bias_ptr": "*bf16", "actg_ptr": "*bf16", "H": "i32",
                       "I": "i32", "K_TOP": "i32", "limit": "fp32", "alpha": "fp32"},
            constexprs={"W": MLP1_TILE[0], "STAGES": MLP1_TILE[1]}, num_warps=MLP1_TILE[0], num_stages=1,
            div16=("H", "I")),
    Variant(name="moe_mlp2_gemm_mma", kernel=moe_mlp2_gemm_mma,
            signature={"actg_ptr": "*bf16", "tiles_ptr": "*i32", "num_tiles_ptr": "*i32", "blocks_ptr": "*u8",
                       "scales_ptr": "*u8", "bias_ptr": "*bf16", "y2_ptr": "*fp32", "H": "i32", "I": "i32"},
            constexprs={"W": MLP2_TILE[0], "STAGES": MLP2_TILE[1]}, num_warps=MLP2_TILE[0], num_stages=1,
            div16=("H", "I")),
]]
