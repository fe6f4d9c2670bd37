"""The one-token MoE block on the tensor cores: the MXFP4 expert products of a
decode step at batch 1, each weight decoded once straight into an mma operand
register.

Why: the fp32 kernels of moe.py (moe_mlp1_route_gemv1, moe_mlp2_route_split)
spend ~7 instructions per weight decoding FP4 codes and multiplying them one at a
time; an H200 SM can issue ~3.6 per weight while its share of the memory
bandwidth delivers it, so they ran at 1.0 and 0.7 TB/s (bench/gpu/NOTES.md).
Here a 32-bit word of 8 weights becomes 4 bf16 pairs in 13 integer instructions
and 16x16 weights go through one mma.sync, so the loop stays under the issue
budget. Triton cannot place an operand in mma registers without a trip through
shared memory, so the loop is PTX (inline assembly, generated below) inside
Triton kernels that do the routing, the reductions and the epilogues.

How the products are laid out (per warp: 16 weight rows r0 + 0..15, every W_K-th
"unit" of 4 consecutive 32-element blocks along K; lane = 4 g + t):
  * A operand (m16n8k16, row major) = the weights, read in the checkpoint's own
    layout: lane (g, t) loads the 16 bytes of block 4u + t of rows r0 + g and
    r0 + g + 8. Word i of a block row (bytes 4i..4i+3, elements 8i..8i+7)
    decodes to four bf16 pairs (8i, 8i+4), (8i+1, 8i+5), (8i+2, 8i+6),
    (8i+3, 8i+7): FP4 code s|e1 e0 m placed at bits 15 | 8 7 6 (and 31 |
    24 23 22) reads as FP4 x 2^-126 exactly (bf16 subnormals for e = 0). The
    16 k of one mma are therefore pairs of 4 different blocks: k-pair t (and
    t + 4) of every row comes from block 4u + t.
  * B operand = x split into bf16 hi and lo parts (x' = 2^64 x, hi = bf16(x'),
    lo = bf16(x' - hi): 16 significant bits), block-diagonal: column c < 4 holds
    x_hi of block 4u + c, column 4 + c its x_lo, zero elsewhere. Only the lanes
    g == t (hi) and g == t + 4 (lo) hold non-zero B; the others read 128 zero
    bytes of shared memory. So D[row, c] is the hi (c < 4) or lo (c >= 4) partial sum of one
    block of one row, and the block's E8M0 scale multiplies it in fp32:
    factor 2^(s - 127) x 2^126 x 2^-64 = 2^(s - 65) (exact for s <= 192; 193 and
    up overflow to inf, like moe.py's gemv kernels).
  * x is read in "hilo" form, written by the producer kernels (moe_router_hilo
    for the expert input, moe_mlp1_route_mma for the activations): per block of
    32 elements 128 bytes; word i: 8 bf16 hi then 8 bf16 lo, element 8i + j at
    position 2 (j % 4) + j // 4. Blocks past K up to a multiple of 4 are zeros
    (the runtime clears them once; nobody writes them).
  * The weights stream through shared memory (cp.async, STAGES units of 1 KB
    per warp in flight); each program first copies x (hilo) and each warp the
    scale bytes of its 16 rows there. A program is W_R x W_K warps: W_R row
    tiles, each split along K between W_K warps that take every W_K-th unit
    (so together they read W_K x 64 neighbouring bytes of each row: runs of 64
    bytes per row and warp, as the fp32 kernels read, held these products to
    ~1.3 TB/s).

Contracts (one token; K_TOP experts from the router logits as moe.py's routed
kernels choose them; R = 2I rows for mlp1, H for mlp2; hilo sizes in bytes:
hilo_bytes(K) = cdiv(K / 32, 4) * 512):
  moe_router_hilo(x, norm_w, eps, w, b, logits, xh, E, H)           grid (cdiv(E, BLOCK_N),)
      logits[n] = w[n] . rmsnorm(x) + b[n] (linear_gemv's fused-norm product) and
      program 0 writes xh = hilo(rmsnorm(x)) (hilo_bytes(H) bytes).
  moe_mlp1_route_mma(xh, logits, E, blocks, scales, bias, acth, H, I, K_TOP, limit, alpha)
                                                                    grid (K_TOP, cdiv(2I / 16, W_R))
      acth[j] = hilo(swiglu(mlp1_e(xn))) for the token's j-th expert e (acth: K_TOP
      blocks of hilo_bytes(I) bytes).
  moe_mlp2_route_mma(acth, logits, E, blocks, scales, bias, part, count, x, H, I, K_TOP)
                                                                    grid (K_TOP, cdiv(H / 16, W_R))
      x += sum_j weight_j * mlp2_{e_j}(act_j) (j increasing): program (j, r) writes its
      rows to part[j]; the last of a row group's K_TOP programs (count[r], acq_rel)
      adds them in order j and sets count[r] back to 0. part fp32 [K_TOP, H]; count
      int32 [cdiv(H / 16, W_R)], zero before the first launch.
Launch requirements: H and I multiples of 32 and at most K_MAX; pointers 16-byte
aligned (the scale rows of 16 weight rows are copied in 16-byte pieces); E <=
BLOCK_E.

Under Triton's interpreter (the CPU tests) inline assembly cannot run: the loop
is replaced by the same sums in plain Triton (exact decode, x read back from the
hilo form), so the tests check everything around it; the PTX itself is checked
on a GPU by the op harness and tests/test_cuda.py.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

from aot import Variant, pdl_begin
from linear import _gemv_tile
from moe import _route_load, _route_next, _swiglu

_INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")
_X_PRESCALE = tl.constexpr(18446744073709551616.0)  # 2^64


K_MAX = 3072  # the longest K (H or I) the shared-memory copy of x is sized for; the runtime checks it


def _smem_bytes(stages: int, warps: int) -> int:
    """Static shared memory of the loop: x (K_MAX in hilo form), 128 zero bytes, then per warp its 16 rows' scale
    bytes (16 K_MAX / 32) and `stages` slots of 1 KB for the weights in flight."""
    return K_MAX // 128 * 512 + 128 + warps * (16 * K_MAX // 32 + stages * 1024)


def _mma_loop_ptx(stages: int, warps: int) -> str:
    """The per-lane loop as PTX. Operands: $0 $1 = acc for rows r0 + g and r0 + g + 8 (f32 out); $2 = the warp's
    first weight row (block 0 of row r0, u64); $3 = the scales of row r0 (u64); $4 = x in hilo form (u64); $5 =
    the step between the warp's units (u64); $6 = blocks per row KB; $7 $8: the warp takes units $7, $7 + $5, ...
    below $8.

    The weights stream through shared memory with asynchronous copies, `stages` units per warp in flight (each
    lane copies and reads back its own 32 bytes a unit, so only cp.async.wait_group orders them). Before the
    loop the CTA copies x (hilo form, every unit) and each warp its rows' scale bytes into shared memory, and
    one bar.sync makes them visible. (Loads straight into registers, a few units ahead, did not overlap: ptxas
    issued all of an iteration's loads at its end and waited for them at the top of the next.)"""
    P = stages
    xreg = K_MAX // 128 * 512
    warp_bytes = 16 * K_MAX // 32 + P * 1024
    total = _smem_bytes(P, warps)
    assert total <= 48 * 1024, "static shared memory is limited to 48 KB"
    L = []
    a = L.append
    a("{")
    a(f".shared .align 16 .b8 gon_mma_smem[{total}];")
    a(".reg .pred %pe, %pl, %phi, %plo;")
    a(".reg .b32 %tdx, %ntd, %lane, %w, %g, %t, %rs, %kb1, %u, %un, %b0, %b1, %c0, %bst, %z, %w2, %v2, %zf, %f;")
    a(".reg .b32 %ra0, %ra1, %ra2, %ra3, %d0, %d1, %d2, %d3, %e0, %e1, %e2, %e3, %sm, %ws, %ssg, %ssh, %as, %aend;")
    a(".reg .b32 %bp, %c, %nch, %dst, %s0, %s1, %s2, %s3, %step;")
    a(".reg .b32 %w0, %w1, %w2_, %w3, %v0, %v1, %v2_, %v3, %h<16>;")
    a(".reg .b64 %rowg, %rowh, %ad, %src;")
    a("cvt.u32.u64 %step, $5;")
    a("mov.u32 %tdx, %tid.x;")
    a("mov.u32 %ntd, %ntid.x;")
    a("and.b32 %lane, %tdx, 31;")
    a("shr.u32 %w, %tdx, 5;")
    a("shr.u32 %g, %lane, 2;")
    a("and.b32 %t, %lane, 3;")
    a("shl.b32 %rs, $6, 4;")                       # row stride in bytes
    a("sub.u32 %kb1, $6, 1;")
    a("mad.wide.u32 %rowg, %g, %rs, $2;")          # row r0 + g
    a("mul.wide.u32 %ad, %rs, 8;")
    a("add.s64 %rowh, %rowg, %ad;")                # row r0 + g + 8
    a("mov.u32 %sm, gon_mma_smem;")
    a(f"mad.lo.u32 %ws, %w, {warp_bytes}, %sm;")
    a(f"add.u32 %ws, %ws, {xreg + 128};")          # this warp's region: scales, then the slots
    # x: the CTA copies every unit (16-byte chunks, thread-strided)
    a("add.u32 %nch, $6, 3;")
    a("shr.u32 %nch, %nch, 2;")
    a("shl.b32 %nch, %nch, 5;")                    # NU * 32 chunks
    a("mov.u32 %c, %tdx;")
    a("GON_MMA_X:")
    a("setp.ge.u32 %pe, %c, %nch;")
    a("@%pe bra GON_MMA_X_END;")
    a("mad.lo.u32 %dst, %c, 16, %sm;")
    a("mad.wide.u32 %src, %c, 16, $4;")
    a("cp.async.cg.shared.global [%dst], [%src], 16;")
    a("add.u32 %c, %c, %ntd;")
    a("bra.uni GON_MMA_X;")
    a("GON_MMA_X_END:")
    a("setp.lt.u32 %pe, %tdx, 8;")
    a(f"mad.lo.u32 %dst, %tdx, 16, {xreg};")
    a("add.u32 %dst, %dst, %sm;")
    a("mov.b32 %zf, 0;")
    a("@%pe st.shared.v4.u32 [%dst], {%zf, %zf, %zf, %zf};")
    # the scales of the warp's 16 rows: 16 KB contiguous bytes (16-byte aligned), lane-strided chunks
    a("mov.u32 %c, %lane;")
    a("GON_MMA_S:")
    a("setp.ge.u32 %pe, %c, $6;")
    a("@%pe bra GON_MMA_S_END;")
    a("mad.lo.u32 %dst, %c, 16, %ws;")
    a("mad.wide.u32 %src, %c, 16, $3;")
    a("cp.async.cg.shared.global [%dst], [%src], 16;")
    a("add.u32 %c, %c, 32;")
    a("bra.uni GON_MMA_S;")
    a("GON_MMA_S_END:")
    a("cp.async.commit_group;")
    a("mad.lo.u32 %ssg, %g, $6, %ws;")
    a("shl.b32 %z, $6, 3;")
    a("add.u32 %ssh, %ssg, %z;")
    a(f"mad.lo.u32 %as, %lane, 32, %ws;")
    a(f"add.u32 %as, %as, {16 * K_MAX // 32};")    # slot 0 of this lane
    a(f"add.u32 %aend, %as, {P * 1024};")

    def copy_unit(unit, slot_reg):
        a(f"setp.lt.u32 %pl, {unit}, $8;")
        a(f"shl.b32 %b0, {unit}, 2;")
        a("add.u32 %b0, %b0, %t;")
        a("min.u32 %b0, %b0, %kb1;")               # the last unit may pass K: re-read the last block (its B is 0)
        a("mad.wide.u32 %ad, %b0, 16, %rowg;")
        a(f"@%pl cp.async.cg.shared.global.L2::256B [{slot_reg}], [%ad], 16;")
        a("mad.wide.u32 %ad, %b0, 16, %rowh;")
        a(f"add.u32 %dst, {slot_reg}, 16;")
        a("@%pl cp.async.cg.shared.global.L2::256B [%dst], [%ad], 16;")
        a("cp.async.commit_group;")

    for s in range(P):
        a(f"mad.lo.u32 %un, %step, {s}, $7;")
        a(f"add.u32 %dst, %as, {s * 1024};")
        copy_unit("%un", "%dst")
    a(f"cp.async.wait_group {P};")
    a("bar.sync 0;")
    # B: lanes g == t read x_hi of block 4u + t, g == t + 4 its x_lo, the others the 128 zero bytes (stride 0)
    a("setp.eq.u32 %phi, %g, %t;")
    a("add.u32 %z, %t, 4;")
    a("setp.eq.u32 %plo, %g, %z;")
    a("shl.b32 %z, $7, 9;")
    a("mad.lo.u32 %z, %t, 128, %z;")
    a("selp.b32 %f, 16, 0, %plo;")
    a("add.u32 %z, %z, %f;")
    a("add.u32 %bp, %z, %sm;")
    a("shl.b32 %f, %step, 9;")
    a("selp.b32 %bst, %f, 0, %phi;")
    a("selp.b32 %bst, %f, %bst, %plo;")
    a("or.pred %phi, %phi, %plo;")
    a(f"add.u32 %z, %sm, {xreg};")
    a("@!%phi mov.b32 %bp, %z;")
    a("and.b32 %c0, %t, 1;")
    a("shl.b32 %c0, %c0, 1;")                      # scale column of d0/d2: block 4u + 2 (t & 1)
    a("mov.b32 $0, 0f00000000;")
    a("mov.b32 $1, 0f00000000;")
    a("mov.u32 %u, $7;")
    a("setp.ge.u32 %pe, %u, $8;")
    a("@%pe bra GON_MMA_END;")
    a("GON_MMA_LOOP:")
    a(f"cp.async.wait_group {P - 1};")
    a("ld.shared.v4.u32 {%w0, %w1, %w2_, %w3}, [%as];")
    a("ld.shared.v4.u32 {%v0, %v1, %v2_, %v3}, [%as+16];")
    for i in range(4):
        a(f"ld.shared.v4.u32 {{%h{4 * i}, %h{4 * i + 1}, %h{4 * i + 2}, %h{4 * i + 3}}}, [%bp+{32 * i}];")
    a("shl.b32 %b0, %u, 2;")
    a("add.u32 %b0, %b0, %c0;")
    a("min.u32 %b1, %b0, %kb1;")
    a("add.u32 %b0, %b0, 1;")
    a("min.u32 %b0, %b0, %kb1;")
    a("add.u32 %z, %ssg, %b1;")
    a("ld.shared.u8 %s0, [%z];")
    a("add.u32 %z, %ssh, %b1;")
    a("ld.shared.u8 %s2, [%z];")
    a("add.u32 %z, %ssg, %b0;")
    a("ld.shared.u8 %s1, [%z];")
    a("add.u32 %z, %ssh, %b0;")
    a("ld.shared.u8 %s3, [%z];")

    def decode(dst, src, hi_nibbles):
        if hi_nibbles:
            a(f"and.b32 %z, {src}, 0x00F000F0;")
            a("mul.lo.u32 %z, %z, 0x104;")
        else:
            a(f"and.b32 %z, {src}, 0x000F000F;")
            a("mul.lo.u32 %z, %z, 0x1040;")
        a(f"and.b32 {dst}, %z, 0x81C081C0;")

    words = ("%w0", "%w1", "%w2_", "%w3")
    vwords = ("%v0", "%v1", "%v2_", "%v3")
    for i in range(4):
        for half in range(2):
            if half == 0:
                wa, va = words[i], vwords[i]
            else:
                a(f"prmt.b32 %w2, {words[i]}, 0, 0x2301;")
                a(f"prmt.b32 %v2, {vwords[i]}, 0, 0x2301;")
                wa, va = "%w2", "%v2"
            decode("%ra0", wa, False)
            decode("%ra1", va, False)
            decode("%ra2", wa, True)
            decode("%ra3", va, True)
            # two accumulators (words 0-1 and 2-3): chains of 4 dependent mma instead of 8
            d = "%d0, %d1, %d2, %d3" if i < 2 else "%e0, %e1, %e2, %e3"
            c = "%zf, %zf, %zf, %zf" if (i % 2 == 0 and half == 0) else d
            a(f"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d}}}, "
              f"{{%ra0, %ra1, %ra2, %ra3}}, {{%h{4 * i + 2 * half}, %h{4 * i + 2 * half + 1}}}, {{{c}}};")
    # the slot is read: refill it with unit u + P
    a(f"mad.lo.u32 %un, %step, {P}, %u;")
    copy_unit("%un", "%as")
    for k in range(4):
        a(f"add.f32 %d{k}, %d{k}, %e{k};")
    # D columns 2t, 2t+1 are blocks 4u + 2 (t & 1) + 0 / 1 (hi for t < 2, lo for t >= 2): scale and add
    for dreg, sreg, acc in (("%d0", "%s0", "$0"), ("%d1", "%s1", "$0"), ("%d2", "%s2", "$1"), ("%d3", "%s3", "$1")):
        a(f"min.u32 %f, {sreg}, 193;")
        a("mad.lo.u32 %f, %f, 8388608, 520093696;")   # (s + 62) << 23: 2^(s - 65)
        a(f"fma.rn.f32 {acc}, {dreg}, %f, {acc};")
    a("add.u32 %as, %as, 1024;")
    a("setp.ge.u32 %pe, %as, %aend;")
    a(f"@%pe sub.u32 %as, %as, {P * 1024};")
    a("add.u32 %bp, %bp, %bst;")
    a("add.u32 %u, %u, %step;")
    a("setp.lt.u32 %pe, %u, $8;")
    a("@%pe bra.uni GON_MMA_LOOP;")
    a("GON_MMA_END:")
    a("cp.async.wait_all;")
    a("}")
    return "\n".join(L)


_PTX_3_1 = tl.constexpr(_mma_loop_ptx(3, 1))
_PTX_4_1 = tl.constexpr(_mma_loop_ptx(4, 1))
_PTX_6_1 = tl.constexpr(_mma_loop_ptx(6, 1))
_PTX_3_2 = tl.constexpr(_mma_loop_ptx(3, 2))
_PTX_4_2 = tl.constexpr(_mma_loop_ptx(4, 2))
_PTX_6_2 = tl.constexpr(_mma_loop_ptx(6, 2))
_PTX_3_4 = tl.constexpr(_mma_loop_ptx(3, 4))
_PTX_4_4 = tl.constexpr(_mma_loop_ptx(4, 4))
_PTX_6_4 = tl.constexpr(_mma_loop_ptx(6, 4))


@triton.jit
def _asm_loop(args, ASM: tl.constexpr):
    return tl.inline_asm_elementwise(ASM, "=f,=f,l,l,l,l,r,r,r", args, dtype=(tl.float32, tl.float32), is_pure=True,
                                     pack=1)


@triton.jit
def _mma_loop(args, STAGES: tl.constexpr, W: tl.constexpr):
    # the PTX forms generated below; another choice would overrun the static shared memory
    tl.static_assert((W == 1) | (W == 2) | (W == 4), "moe_mma: W_R * W_K must be 1, 2 or 4")
    tl.static_assert((STAGES == 3) | (STAGES == 4) | (STAGES == 6), "moe_mma: STAGES must be 3, 4 or 6")
    if W == 1:
        if STAGES == 3:
            acc0, acc1 = _asm_loop(args, _PTX_3_1)
        elif STAGES == 4:
            acc0, acc1 = _asm_loop(args, _PTX_4_1)
        else:
            acc0, acc1 = _asm_loop(args, _PTX_6_1)
    elif W == 2:
        if STAGES == 3:
            acc0, acc1 = _asm_loop(args, _PTX_3_2)
        elif STAGES == 4:
            acc0, acc1 = _asm_loop(args, _PTX_4_2)
        else:
            acc0, acc1 = _asm_loop(args, _PTX_6_2)
    else:
        if STAGES == 3:
            acc0, acc1 = _asm_loop(args, _PTX_3_4)
        elif STAGES == 4:
            acc0, acc1 = _asm_loop(args, _PTX_4_4)
        else:
            acc0, acc1 = _asm_loop(args, _PTX_6_4)
    return acc0, acc1


@triton.jit
def _hilo_offset(k):
    """Position (in bf16 elements) of x[k]'s hi part in the hilo form; its lo part is 8 further."""
    e = k % 32
    j = e % 8
    return (k // 32) * 64 + (e // 8) * 16 + 2 * (j % 4) + j // 4


@triton.jit
def _store_hilo(xh_ptr, k, v, mask):
    """Writes 2^64 v[k] as bf16 hi + lo parts in the hilo form."""
    vs = v * _X_PRESCALE
    hi = vs.to(tl.bfloat16)
    lo = (vs - hi.to(tl.float32)).to(tl.bfloat16)
    off = _hilo_offset(k)
    tl.store(xh_ptr + off, hi, mask=mask)
    tl.store(xh_ptr + off + 8, lo, mask=mask)


@triton.jit
def _emulated_rows(wrow_ptr, srow_ptr, xh_ptr, KB, u0, step, g, first):
    """What the PTX loop gives, in plain Triton (for the interpreter): for each lane the exact sum over the blocks
    of its warp's units (u0, u0 + step, ...) of row g's weights times x (x read back from the hilo form), put in
    lane t = 0's slot."""
    acc = tl.zeros(g.shape, tl.float32)
    kk = tl.arange(0, 32)
    for b in range(0, KB):
        inside = ((b // 4) % step == u0) & first
        q = tl.load(wrow_ptr[:, None] + (g[:, None].to(tl.int64) * KB + b) * 16 + kk[None, :] // 2).to(tl.int32)
        code = tl.where((kk[None, :] % 2) == 0, q & 15, q >> 4)
        w = ((((code & 7) << 22) | ((code & 8) << 28)).to(tl.float32, bitcast=True))   # FP4 x 2^-126
        off = _hilo_offset(b * 32 + kk)
        xv = tl.load(xh_ptr + off).to(tl.float32) + tl.load(xh_ptr + off + 8).to(tl.float32)
        d = tl.sum(w * xv[None, :], axis=1)
        s = tl.load(srow_ptr + g.to(tl.int64) * KB + b).to(tl.int32)
        f1 = ((tl.minimum(s, 128) + 126) << 23).to(tl.float32, bitcast=True)          # 2^(min(s, 128) - 1)
        f2 = ((tl.maximum(s, 128) - 1 - 64) << 23).to(tl.float32, bitcast=True)       # 2^(max(s, 128) - 192)
        acc += tl.where(inside, (d * f1) * f2, 0.0)
    return acc


@triton.jit
def _mma_rows(w_ptr, s_ptr, xh_ptr, KB, tile0, ntiles, W_R: tl.constexpr, W_K: tl.constexpr,
              STAGES: tl.constexpr):
    """sum_k W[16 tile + r, k] x[k] for the W_R row tiles tile0 .. tile0 + W_R - 1 (fp32 [16 W_R], row 16 wr + r;
    tiles past ntiles - 1 repeat the last one). w_ptr / s_ptr: the expert's blocks and scales. Warp w of the
    program takes tile tile0 + w // W_K and the (w % W_K)-th share of the units of 4 blocks; element i of the lane
    vectors is thread i."""
    i = tl.arange(0, 32 * W_R * W_K)
    w = i // 32
    tile = tl.minimum(tile0 + w // W_K, ntiles - 1).to(tl.int64)
    u0 = w % W_K                                    # units u0, u0 + W_K, ...: the W_K warps of a tile read
    u1 = (KB + 3) // 4 + tl.zeros_like(u0)          # neighbouring pieces of its rows at the same time
    wrow = w_ptr + tile * 16 * KB * 16
    srow = s_ptr + tile * 16 * KB
    if _INTERPRET:
        g = (i % 32) // 4
        first = (i % 4) == 0
        acc0 = _emulated_rows(wrow, srow, xh_ptr, KB, u0, W_K, g, first)
        acc1 = _emulated_rows(wrow, srow, xh_ptr, KB, u0, W_K, g + 8, first)
    else:
        zero64 = tl.zeros([32 * W_R * W_K], tl.int64)
        args = [wrow.to(tl.int64), srow.to(tl.int64), xh_ptr.to(tl.int64) + zero64, zero64 + W_K,
                KB + tl.zeros([32 * W_R * W_K], tl.int32), u0, u1]
        acc0, acc1 = _mma_loop(args, STAGES, W_R * W_K)
    lo = tl.sum(tl.sum(tl.reshape(acc0, [W_R, W_K, 8, 4]), axis=3), axis=1)                     # rows 0..7
    hi = tl.sum(tl.sum(tl.reshape(acc1, [W_R, W_K, 8, 4]), axis=3), axis=1)                     # rows 8..15
    return tl.reshape(tl.permute(tl.join(lo, hi), (0, 2, 1)), [16 * W_R])


@triton.jit
def _hilo_bytes(K):
    return ((K // 32 + 3) // 4) * 512


@triton.jit
def moe_router_hilo(x_ptr, norm_w_ptr, eps, w_ptr, b_ptr, logits_ptr, xh_ptr, E, H, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, STAGES: tl.constexpr, BLOCK_H: tl.constexpr):
    pdl_begin()
    out, offs_m, m_mask, offs_n, n_mask = _gemv_tile(x_ptr, x_ptr, norm_w_ptr, w_ptr, b_ptr, 1, E, H, eps, 1, 1, 0,
                                                     1, BLOCK_N, BLOCK_K, STAGES, 1)
    tl.store(logits_ptr + offs_n[None, :], out, mask=m_mask[:, None] & n_mask[None, :])
    if tl.program_id(0) == 0:
        hh = tl.arange(0, BLOCK_H)
        ss = tl.zeros([BLOCK_H], tl.float32)
        for h0 in range(0, H, BLOCK_H):
            v = tl.load(x_ptr + h0 + hh, mask=(h0 + hh) < H, other=0.0)
            ss += v * v
        inv = 1.0 / tl.sqrt(tl.sum(ss, axis=0) / H + eps)
        for h0 in range(0, H, BLOCK_H):
            m = (h0 + hh) < H
            v = tl.load(x_ptr + h0 + hh, mask=m, other=0.0) * inv
            v = v * tl.load(norm_w_ptr + h0 + hh, mask=m, other=0.0).to(tl.float32)
            _store_hilo(xh_ptr, h0 + hh, v, m)


@triton.jit
def _route_expert(logits_ptr, j, E, BLOCK_E: tl.constexpr):
    """The token's j-th expert (moe.py's routed selection)."""
    e_lanes, vals, taken, first = _route_load(logits_ptr, j * 0, E, BLOCK_E)
    idx = 0
    best = first
    for _j in range(0, j + 1):
        taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
    return idx.to(tl.int64)


@triton.jit
def moe_mlp1_route_mma(xh_ptr, logits_ptr, E, blocks_ptr, scales_ptr, bias_ptr, acth_ptr, H, I, K_TOP, limit, alpha,
                       W_R: tl.constexpr, W_K: tl.constexpr, STAGES: tl.constexpr, BLOCK_E: tl.constexpr):
    pdl_begin()
    j = tl.program_id(0)
    tile0 = tl.program_id(1) * W_R
    e = _route_expert(logits_ptr, j, E, BLOCK_E)
    R = 2 * I
    KB = H // 32
    y = _mma_rows(blocks_ptr + e * R * KB * 16, scales_ptr + e * R * KB, xh_ptr, KB, tile0, R // 16, W_R, W_K,
                  STAGES)
    rows = tile0 * 16 + tl.arange(0, 16 * W_R)
    y += tl.load(bias_ptr + e * R + rows, mask=rows < R, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [8 * W_R, 2]))
    cols = tile0 * 8 + tl.arange(0, 8 * W_R)
    act_h = acth_ptr + j.to(tl.int64) * (_hilo_bytes(I) // 2)
    _store_hilo(act_h, cols, _swiglu(gate, up, limit, alpha), cols < I)


@triton.jit
def moe_mlp2_route_mma(acth_ptr, logits_ptr, E, blocks_ptr, scales_ptr, bias_ptr, part_ptr, count_ptr, x_ptr, H, I,
                       K_TOP, W_R: tl.constexpr, W_K: tl.constexpr, STAGES: tl.constexpr, BLOCK_E: tl.constexpr):
    pdl_begin()
    j = tl.program_id(0)
    grp = tl.program_id(1)
    tile0 = grp * W_R
    e = _route_expert(logits_ptr, j, E, BLOCK_E)
    KB = I // 32
    act_h = acth_ptr + j.to(tl.int64) * (_hilo_bytes(I) // 2)
    y = _mma_rows(blocks_ptr + e * H * KB * 16, scales_ptr + e * H * KB, act_h, KB, tile0, H // 16, W_R, W_K, STAGES)
    rows = tile0 * 16 + tl.arange(0, 16 * W_R)
    rm = rows < H
    tl.store(part_ptr + j.to(tl.int64) * H + rows, y, mask=rm)
    tl.debug_barrier()                                  # every thread's partials are written before the count
    done = tl.atomic_add(count_ptr + grp, 1, sem="acq_rel", scope="gpu")
    if done == K_TOP - 1:
        e_lanes, vals, taken0, first = _route_load(logits_ptr, j * 0, E, BLOCK_E)
        total = 0.0
        taken = taken0
        for _j in range(0, K_TOP):
            taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
            total += tl.exp(best - first)
        out = tl.zeros([16 * W_R], tl.float32)
        taken = taken0
        for jj in range(0, K_TOP):                       # experts in increasing j: deterministic
            taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
            yj = tl.load(part_ptr + jj * H + rows, mask=rm, other=0.0, cache_modifier=".cg")
            yj += tl.load(bias_ptr + idx.to(tl.int64) * H + rows, mask=rm, other=0.0).to(tl.float32)
            out += (tl.exp(best - first) / total) * yj
        tl.store(x_ptr + rows, tl.load(x_ptr + rows, mask=rm, other=0.0) + out, mask=rm)
        tl.atomic_xchg(count_ptr + grp, 0, sem="relaxed", scope="gpu")


# (W_R row tiles, W_K warps along K per tile, STAGES units in flight per warp) of the two products
# (bench/gpu/moe_mma_lab.py --tiles, H200, 20b shapes, run 40: mlp1 25.3 us at (4, 1, 4) against 25.8-30.8 for the
# other tiles tried, mlp2 19.2 us at (1, 1, 4) against 19.4-24.5; the fp32 kernels: 33.5 and 24.0 us)
MLP1_TILE = (4, 1, 4)
MLP2_TILE = (1, 1, 4)

VARIANTS = [
    Variant(name="moe_router_hilo", kernel=moe_router_hilo,
            signature={"x_ptr": "*fp32", "norm_w_ptr": "*bf16", "eps": "fp32", "w_ptr": "*bf16", "b_ptr": "*bf16",
                       "logits_ptr": "*fp32", "xh_ptr": "*bf16", "E": "i32", "H": "i32"},
            constexprs={"BLOCK_N": 2, "BLOCK_K": 1024, "STAGES": 3, "BLOCK_H": 1024}, num_warps=2, num_stages=1,
            div16=("H",)),
] + [
    Variant(name=f"moe_mlp1_route_mma_e{be}", kernel=moe_mlp1_route_mma,
            signature={"xh_ptr": "*bf16", "logits_ptr": "*fp32", "E": "i32", "blocks_ptr": "*u8", "scales_ptr": "*u8",
                       "bias_ptr": "*bf16", "acth_ptr": "*bf16", "H": "i32", "I": "i32", "K_TOP": "i32",
                       "limit": "fp32", "alpha": "fp32"},
            constexprs={"W_R": MLP1_TILE[0], "W_K": MLP1_TILE[1], "STAGES": MLP1_TILE[2], "BLOCK_E": be},
            num_warps=MLP1_TILE[0] * MLP1_TILE[1],
            num_stages=1, div16=("H", "I"))
    for be in (32, 128)
] + [
    Variant(name=f"moe_mlp2_route_mma_e{be}", kernel=moe_mlp2_route_mma,
            signature={"acth_ptr": "*bf16", "logits_ptr": "*fp32", "E": "i32", "blocks_ptr": "*u8",
                       "scales_ptr": "*u8", "bias_ptr": "*bf16", "part_ptr": "*fp32", "count_ptr": "*i32",
                       "x_ptr": "*fp32", "H": "i32", "I": "i32", "K_TOP": "i32"},
            constexprs={"W_R": MLP2_TILE[0], "W_K": MLP2_TILE[1], "STAGES": MLP2_TILE[2], "BLOCK_E": be},
            num_warps=MLP2_TILE[0] * MLP2_TILE[1],
            num_stages=1, div16=("H", "I"))
    for be in (32, 128)
]
