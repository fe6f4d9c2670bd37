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
    g == t (hi) and g == t + 4 (lo) hold non-zero B; the others keep zero
    registers. So D[row, c] is the hi (c < 4) or lo (c >= 4) partial sum of one
    block of one row, and the block's E8M0 scale multiplies it in fp32:
    factor 2^(s - 127) x 2^126 x 2^-64 = 2^(s - 65) (exact for s <= 192; 193 and
    up overflow to inf, like moe.py's gemv kernels).
  * x is read in "hilo" form, written by the producer kernels (moe_router_hilo
    for the expert input, moe_mlp1_route_mma for the activations): per block of
    32 elements 128 bytes; word i: 8 bf16 hi then 8 bf16 lo, element 8i + j at
    position 2 (j % 4) + j // 4. Blocks past K up to a multiple of 4 are zeros
    (the runtime clears them once; nobody writes them).
  * The weights stream through shared memory (cp.async, STAGES units of RT KB
    per warp in flight); each program first copies x (hilo) and each warp the
    scale bytes of its rows there. A program is W_R x W_K warps: W_R row
    groups of RT tiles of 16 rows (a warp takes the units of all RT tiles at
    once, sharing its B operands between them), each group split along K
    between W_K warps that take every W_K-th unit (so together they read W_K x
    64 neighbouring bytes of each row). Shared memory is laid out so that no
    load of the loop has a bank conflict, and only the 8 lanes whose B operand
    is not zero load it.

Contracts (one token; K_TOP experts from the router logits as moe.py's routed
kernels choose them (mlp1 chooses, mlp2 reads its choice); R = 2I rows for mlp1, H for mlp2; hilo sizes in bytes:
hilo_bytes(K) = cdiv(K / 32, 4) * 512):
  moe_router_hilo(x, norm_w, eps, w, b, logits, xh, E, H)           grid (cdiv(E, BLOCK_N),)
      logits[n] = w[n] . rmsnorm(x) + b[n] (linear_gemv's fused-norm product) and
      xh = hilo(rmsnorm(x)) (hilo_bytes(H) bytes; each program writes a share).
  moe_mlp1_route_mma(xh, logits, E, blocks, scales, bias, acth, route_ids, route_u, H, I, K_TOP, limit, alpha)
                                                                    grid (K_TOP, cdiv(2I / 16, RT W_R))
      acth[j] = hilo(swiglu(mlp1_e(xn))) for the token's j-th expert e (acth: K_TOP
      blocks of hilo_bytes(I) bytes); programs (j, 0) also write route_ids[j] = e (int32) and
      route_u[j] = exp(logit_e - max logit) (fp32), for mlp2.
  moe_mlp2_route_mma(acth, route_ids, route_u, blocks, scales, bias, part, count, x, H, I, K_TOP)
                                                                    grid (K_TOP, cdiv(H / 16, RT W_R))
      x += sum_j weight_j * mlp2_{e_j}(act_j) (j increasing; weight_j = route_u[j] / sum route_u, the
      sum in order j: moe.py's top-k softmax): program (j, r) writes its
      rows (bias included) to part[j]; the last of a row group's K_TOP programs (count[r], acq_rel)
      adds them in order j and sets count[r] back to 0. part fp32 [K_TOP, H]; count
      int32 [cdiv(H / 16, RT W_R)], zero before the first launch.
Launch requirements: H and I multiples of 32 and at most K_MAX; pointers 16-byte
aligned (the scale rows of 16 weight rows are copied in 16-byte pieces); E <=
BLOCK_E.

Under Triton's interpreter (the CPU tests) inline assembly cannot run: the loop
is replaced by the same sums in plain Triton (exact decode, x read back from the
hilo form), so the tests check everything around it; the PTX itself runs in
tests/ptx_emu.py's warp emulator on the CPU (test_moe_mma_ptx), and on a GPU in
the op harness and tests/test_cuda.py.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

from aot import Variant, pdl_begin, pdl_trigger, pdl_wait
from linear import _gemv_tile
from moe import _route_load, _route_next, _swiglu

_INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")
_X_PRESCALE = tl.constexpr(18446744073709551616.0)  # 2^64


K_MAX = 3072  # the longest K (H or I) the shared-memory copy of x is sized for; the runtime checks it (build.py
#             passes it to the C++ as kernels_mma_k_max())


X_PITCH = 144  # bytes per 32-element block of x in shared memory (128 of data; the skew keeps B loads conflict-free)


def _smem_bytes(stages: int, warps: int, rt: int) -> int:
    """Static shared memory of the loop: x (K_MAX / 32 blocks of X_PITCH bytes), then per warp the scale bytes of
    its 16 rt rows (16 rt K_MAX / 32) and `stages` slots of rt KB for the weights in flight."""
    return K_MAX // 32 * X_PITCH + warps * (16 * rt * K_MAX // 32 + stages * 1024 * rt)


def decode_fp4_ptx(dst: str, src: str, hi_nibbles: bool) -> list:
    """PTX that decodes two FP4 codes of the 32-bit word src into a bf16 pair in dst (FP4 x 2^-126, exact): the
    low nibbles of its bytes 0 and 2 (elements 8i, 8i + 4 of a word i), or their high nibbles (8i + 1, 8i + 5).
    Uses %z as scratch."""
    if hi_nibbles:
        first = [f"and.b32 %z, {src}, 0x00F000F0;", "mul.lo.u32 %z, %z, 0x104;"]
    else:
        first = [f"and.b32 %z, {src}, 0x000F000F;", "mul.lo.u32 %z, %z, 0x1040;"]
    return first + [f"and.b32 {dst}, %z, 0x81C081C0;"]


def _mma_loop_ptx(stages: int, warps: int, rt: int) -> str:
    """The per-lane loop as PTX, for a warp of `rt` row tiles (16 rt consecutive rows, or the first tile twice).

    Operands: $0 .. $(2 rt - 1) = acc (f32 out) for rows r0 + g, r0 + g + 8 of each tile; then (inputs, in order)
    the warp's first weight row (block 0 of row r0, u64); the scales of row r0 (u64); x in hilo form (u64); the
    step between the warp's units (u64); blocks per row KB (u32); the warp takes units u0, u0 + step, ... below
    u1 (u32, u32); for rt = 2, the rows from the first tile to the second (u32: 16, or 0 where the second tile
    would pass the end).

    The weights stream through shared memory with asynchronous copies, `stages` units per warp in flight; lane l
    copies and later reads back its own 16-byte pieces (row g at l x 16 of the slot, row g + 8 at 512 + l x 16,
    and so on per tile: bank-conflict free), so only cp.async.wait_group orders them. Before the loop the CTA
    copies x (hilo form, every unit) and each warp its rows' scale bytes into shared memory, and one bar.sync
    makes them visible. B operands: only the lanes g == t (x_hi) and g == t + 4 (x_lo) load; the other lanes'
    B registers stay zero. x's blocks sit X_PITCH bytes apart, so the two loading lanes of a quarter warp hit
    different banks. (Loads straight into registers, a few units ahead, did not overlap: ptxas issued all of an
    iteration's loads at its end and waited for them at the top of the next.)"""
    P = stages
    assert rt in (1, 2)
    no = 2 * rt
    ROW, SC, XH, STEP, KB, U0, U1, T2 = (f"${no + i}" for i in range(8))
    xreg = K_MAX // 32 * X_PITCH
    sc_bytes = 16 * rt * K_MAX // 32
    slot = 1024 * rt
    warp_bytes = sc_bytes + P * slot
    total = _smem_bytes(P, warps, rt)
    assert total <= 48 * 1024, "static shared memory is limited to 48 KB"
    L = []
    a = L.append
    a("{")
    a(f".shared .align 16 .b8 gon_mma_smem[{total}];")
    a(".reg .pred %pe, %pl, %phi, %plo, %pd, %p2;")
    a(".reg .b32 %tdx, %ntd, %lane, %w, %g, %t, %rs, %kb1, %u, %un, %b0, %b1, %c0, %bst, %z, %w2, %v2, %zf, %f;")
    a(".reg .b32 %ra0, %ra1, %ra2, %ra3, %sm, %ws, %as, %aend, %bp, %c, %nch, %nsc, %dst, %sb, %step;")
    a(".reg .b32 %h<16>;")
    a(".reg .b64 %ad, %src, %sadj;")
    for r in range(rt):
        a(f".reg .b32 %w{r}_<4>, %v{r}_<4>, %d{r}_<4>, %e{r}_<4>, %s{r}_<4>, %ss{r}_<2>;")
        a(f".reg .b64 %row{r}_<2>;")
    a(f"cvt.u32.u64 %step, {STEP};")
    a("mov.u32 %tdx, %tid.x;")
    a("mov.u32 %ntd, %ntid.x;")
    a("and.b32 %lane, %tdx, 31;")
    a("shr.u32 %w, %tdx, 5;")
    a("shr.u32 %g, %lane, 2;")
    a("and.b32 %t, %lane, 3;")
    a(f"shl.b32 %rs, {KB}, 4;")                    # row stride in bytes
    a(f"sub.u32 %kb1, {KB}, 1;")
    a(f"mad.wide.u32 %row0_0, %g, %rs, {ROW};")     # row r0 + g
    a("mul.wide.u32 %ad, %rs, 8;")
    a("add.s64 %row0_1, %row0_0, %ad;")            # row r0 + g + 8
    if rt == 2:
        a(f"mul.wide.u32 %ad, %rs, {T2};")
        a("add.s64 %row1_0, %row0_0, %ad;")        # the second tile's rows
        a("add.s64 %row1_1, %row0_1, %ad;")
    a("mov.u32 %sm, gon_mma_smem;")
    a(f"mad.lo.u32 %ws, %w, {warp_bytes}, %sm;")
    a(f"add.u32 %ws, %ws, {xreg};")                # this warp's region: scales, then the slots
    # x: the CTA copies every unit (16-byte chunks, thread-strided; chunk c -> block c / 8 at X_PITCH bytes each)
    a(f"add.u32 %nch, {KB}, 3;")
    a("shr.u32 %nch, %nch, 2;")
    a("shl.b32 %nch, %nch, 5;")                    # NU * 32 chunks
    a("mov.u32 %c, %tdx;")
    a("GON_MMA_X:")
    a("setp.ge.u32 %pe, %c, %nch;")
    a("@%pe bra GON_MMA_X_END;")
    a("shr.u32 %z, %c, 3;")
    a("and.b32 %f, %c, 7;")
    a("shl.b32 %f, %f, 4;")
    a(f"mad.lo.u32 %dst, %z, {X_PITCH}, %f;")
    a("add.u32 %dst, %dst, %sm;")
    a(f"mad.wide.u32 %src, %c, 16, {XH};")
    a("cp.async.cg.shared.global [%dst], [%src], 16;")
    a("add.u32 %c, %c, %ntd;")
    a("bra.uni GON_MMA_X;")
    a("GON_MMA_X_END:")
    # the scales of the warp's rows: 16 KB contiguous bytes per tile (16-byte aligned), lane-strided chunks
    a(f"mul.lo.u32 %nsc, {KB}, {rt};")
    if rt == 2:
        a(f"sub.u32 %z, {T2}, 16;")
        a(f"mul.wide.s32 %sadj, %z, {KB};")        # the second tile's scales: (T2 - 16) KB bytes further
    a("mov.u32 %c, %lane;")
    a("GON_MMA_S:")
    a("setp.ge.u32 %pe, %c, %nsc;")
    a("@%pe bra GON_MMA_S_END;")
    a("mad.lo.u32 %dst, %c, 16, %ws;")
    a(f"mad.wide.u32 %src, %c, 16, {SC};")
    if rt == 2:
        a(f"setp.ge.u32 %p2, %c, {KB};")
        a("@%p2 add.s64 %src, %src, %sadj;")
    a("cp.async.cg.shared.global [%dst], [%src], 16;")
    a("add.u32 %c, %c, 32;")
    a("bra.uni GON_MMA_S;")
    a("GON_MMA_S_END:")
    a("cp.async.commit_group;")
    for r in range(rt):
        a(f"add.u32 %z, %g, {16 * r};")
        a(f"mad.lo.u32 %ss{r}_0, %z, {KB}, %ws;")  # scale bytes of row 16 r + g
        a(f"add.u32 %z, %z, 8;")
        a(f"mad.lo.u32 %ss{r}_1, %z, {KB}, %ws;")  # row 16 r + g + 8
    a("mad.lo.u32 %as, %lane, 16, %ws;")
    a(f"add.u32 %as, %as, {sc_bytes};")            # slot 0, this lane's first piece
    a(f"add.u32 %aend, %as, {P * slot};")

    rows = [f"%row{r}_{i}" for r in range(rt) for i in range(2)]

    def copy_unit(unit, slot_reg):  # slot_reg: the lane's first piece in the slot (not %dst, which this writes)
        a(f"setp.lt.u32 %pl, {unit}, {U1};")
        a(f"shl.b32 %b0, {unit}, 2;")
        a("add.u32 %b0, %b0, %t;")
        a("min.u32 %b0, %b0, %kb1;")               # the last unit may pass K: re-read the last block (its B is 0)
        for i, row in enumerate(rows):
            a(f"mad.wide.u32 %ad, %b0, 16, {row};")
            if i == 0:
                dst = slot_reg
            else:
                a(f"add.u32 %dst, {slot_reg}, {512 * i};")
                dst = "%dst"
            a(f"@%pl cp.async.cg.shared.global.L2::256B [{dst}], [%ad], 16;")
        a("cp.async.commit_group;")

    for s in range(P):
        a(f"mad.lo.u32 %un, %step, {s}, {U0};")
        a(f"add.u32 %sb, %as, {s * slot};")
        copy_unit("%un", "%sb")
    a(f"cp.async.wait_group {P};")
    a("bar.sync 0;")
    # B: lanes g == t read x_hi of block 4u + t, g == t + 4 its x_lo; the others keep zeros
    a("setp.eq.u32 %phi, %g, %t;")
    a("add.u32 %z, %t, 4;")
    a("setp.eq.u32 %plo, %g, %z;")
    a("or.pred %pd, %phi, %plo;")
    a(f"shl.b32 %z, {U0}, 2;")
    a("add.u32 %z, %z, %t;")
    a("selp.b32 %f, 16, 0, %plo;")
    a(f"mad.lo.u32 %z, %z, {X_PITCH}, %f;")
    a("add.u32 %bp, %z, %sm;")
    a(f"mul.lo.u32 %bst, %step, {4 * X_PITCH};")
    a("mov.b32 %zf, 0;")
    for i in range(16):
        a(f"mov.b32 %h{i}, 0;")
    a("and.b32 %c0, %t, 1;")
    a("shl.b32 %c0, %c0, 1;")                      # scale column of d0/d2: block 4u + 2 (t & 1)
    for i in range(no):
        a(f"mov.b32 ${i}, 0f00000000;")
    a(f"mov.u32 %u, {U0};")
    a(f"setp.ge.u32 %pe, %u, {U1};")
    a("@%pe bra GON_MMA_END;")
    a("GON_MMA_LOOP:")
    a(f"cp.async.wait_group {P - 1};")
    for i in range(4):
        a(f"@%pd ld.shared.v4.u32 {{%h{4 * i}, %h{4 * i + 1}, %h{4 * i + 2}, %h{4 * i + 3}}}, [%bp+{32 * i}];")
    a("shl.b32 %b0, %u, 2;")
    a("add.u32 %b0, %b0, %c0;")
    a("min.u32 %b1, %b0, %kb1;")
    a("add.u32 %b0, %b0, 1;")
    a("min.u32 %b0, %b0, %kb1;")

    def decode(dst, src, hi_nibbles):
        L.extend(decode_fp4_ptx(dst, src, hi_nibbles))

    for r in range(rt):
        a(f"ld.shared.v4.u32 {{%w{r}_0, %w{r}_1, %w{r}_2, %w{r}_3}}, [%as+{1024 * r}];")
        a(f"ld.shared.v4.u32 {{%v{r}_0, %v{r}_1, %v{r}_2, %v{r}_3}}, [%as+{1024 * r + 512}];")
        for k, (ss, b) in enumerate(((0, "%b1"), (0, "%b0"), (1, "%b1"), (1, "%b0"))):
            a(f"add.u32 %z, %ss{r}_{ss}, {b};")
            a(f"ld.shared.u8 %s{r}_{k}, [%z];")
        for i in range(4):
            for half in range(2):
                if half == 0:
                    wa, va = f"%w{r}_{i}", f"%v{r}_{i}"
                else:
                    a(f"prmt.b32 %w2, %w{r}_{i}, 0, 0x2301;")
                    a(f"prmt.b32 %v2, %v{r}_{i}, 0, 0x2301;")
                    wa, va = "%w2", "%v2"
                decode("%ra0", wa, False)
                decode("%ra1", va, False)
                decode("%ra2", wa, True)
                decode("%ra3", va, True)
                # two accumulators (words 0-1 and 2-3): chains of 4 dependent mma instead of 8
                dr = "d" if i < 2 else "e"
                d = ", ".join(f"%{dr}{r}_{j}" for j in range(4))
                c = "%zf, %zf, %zf, %zf" if (i % 2 == 0 and half == 0) else d
                a(f"mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{{d}}}, "
                  f"{{%ra0, %ra1, %ra2, %ra3}}, {{%h{4 * i + 2 * half}, %h{4 * i + 2 * half + 1}}}, {{{c}}};")
    # the slot is read: refill it with unit u + P
    a(f"mad.lo.u32 %un, %step, {P}, %u;")
    copy_unit("%un", "%as")
    for r in range(rt):
        for k in range(4):
            a(f"add.f32 %d{r}_{k}, %d{r}_{k}, %e{r}_{k};")
        # D columns 2t, 2t+1 are blocks 4u + 2 (t & 1) + 0 / 1 (hi for t < 2, lo for t >= 2): scale and add
        for k, acc in enumerate((f"${2 * r}", f"${2 * r}", f"${2 * r + 1}", f"${2 * r + 1}")):
            a(f"min.u32 %f, %s{r}_{k}, 193;")
            a("mad.lo.u32 %f, %f, 8388608, 520093696;")   # (s + 62) << 23: 2^(s - 65)
            a(f"fma.rn.f32 {acc}, %d{r}_{k}, %f, {acc};")
    a(f"add.u32 %as, %as, {slot};")
    a("setp.ge.u32 %pe, %as, %aend;")
    a(f"@%pe sub.u32 %as, %as, {P * slot};")
    a("add.u32 %bp, %bp, %bst;")
    a("add.u32 %u, %u, %step;")
    a(f"setp.lt.u32 %pe, %u, {U1};")
    a("@%pe bra.uni GON_MMA_LOOP;")
    a("GON_MMA_END:")
    a("cp.async.wait_all;")
    a("}")
    return "\n".join(L)


# The PTX of every (stages, warps, rt) whose shared memory fits (a table of strings: Triton's dependency scan of a
# constexpr_function refuses references to plain functions).
_PTX = {(p, w, rt): _mma_loop_ptx(p, w, rt) for p in (2, 3, 4, 6, 8) for w in (1, 2, 4, 8) for rt in (1, 2)
        if _smem_bytes(p, w, rt) <= 48 * 1024}


@triton.constexpr_function
def _loop_asm(stages, warps, rt):
    key = (int(stages), int(warps), int(rt))
    if key not in _PTX:
        raise ValueError(f"moe_mma: no loop for (STAGES, W_R * W_K, RT) = {key}: its shared memory would pass 48 KB")
    return _PTX[key]


@triton.jit
def _mma_loop(args, STAGES: tl.constexpr, W: tl.constexpr, RT: tl.constexpr):
    # (not pure: the loop copies with cp.async and meets the CTA's other warps at bar.sync, so it must not be
    # moved or merged; the cubins are the same bytes either way with Triton 3.6)
    if RT == 1:
        # (the last argument, the second tile's row offset, is unused: "r" binds it to a register nobody reads)
        acc0, acc1 = tl.inline_asm_elementwise(_loop_asm(STAGES, W, RT), "=f,=f,l,l,l,l,r,r,r,r", args,
                                               dtype=(tl.float32, tl.float32), is_pure=False, pack=1)
        return acc0, acc1, acc0, acc1
    else:
        return tl.inline_asm_elementwise(_loop_asm(STAGES, W, RT), "=f,=f,=f,=f,l,l,l,l,r,r,r,r", args,
                                         dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=False,
                                         pack=1)


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
def _mma_rows(w_ptr, s_ptr, xh_ptr, KB, grp0, ntiles, W_R: tl.constexpr, W_K: tl.constexpr, STAGES: tl.constexpr,
              RT: tl.constexpr):
    """sum_k W[row, k] x[k] for the W_R row groups grp0 .. grp0 + W_R - 1 of RT tiles of 16 rows (fp32
    [16 RT W_R], rows 16 RT grp0 + i; groups past the last repeat it, a second tile past ntiles - 1 repeats the
    first). w_ptr / s_ptr: the expert's blocks and scales. Warp w of the program takes group grp0 + w // W_K and
    the (w % W_K)-th share of the units of 4 blocks; element i of the lane vectors is thread i."""
    i = tl.arange(0, 32 * W_R * W_K)
    w = i // 32
    ngroups = (ntiles + RT - 1) // RT
    tile = (tl.minimum(grp0 + w // W_K, ngroups - 1) * RT).to(tl.int64)
    tile2 = tl.minimum(tile + 1, ntiles - 1)
    u0 = w % W_K                                    # units u0, u0 + W_K, ...: the W_K warps of a group read
    u1 = (KB + 3) // 4 + tl.zeros_like(u0)          # neighbouring pieces of its rows at the same time
    wrow = w_ptr + tile * 16 * KB * 16
    srow = s_ptr + tile * 16 * KB
    if _INTERPRET:
        g = (i % 32) // 4
        first = (i % 4) == 0
        acc0 = _emulated_rows(wrow, srow, xh_ptr, KB, u0, W_K, g, first)
        acc1 = _emulated_rows(wrow, srow, xh_ptr, KB, u0, W_K, g + 8, first)
        if RT == 2:
            wrow2 = w_ptr + tile2 * 16 * KB * 16
            srow2 = s_ptr + tile2 * 16 * KB
            acc2 = _emulated_rows(wrow2, srow2, xh_ptr, KB, u0, W_K, g, first)
            acc3 = _emulated_rows(wrow2, srow2, xh_ptr, KB, u0, W_K, g + 8, first)
        else:
            acc2 = acc0
            acc3 = acc1
    else:
        zero64 = tl.zeros([32 * W_R * W_K], tl.int64)
        args = [wrow.to(tl.int64), srow.to(tl.int64), xh_ptr.to(tl.int64) + zero64, zero64 + W_K,
                KB + tl.zeros([32 * W_R * W_K], tl.int32), u0, u1, (16 * (tile2 - tile)).to(tl.int32)]
        acc0, acc1, acc2, acc3 = _mma_loop(args, STAGES, W_R * W_K, RT)
    r0 = tl.sum(tl.sum(tl.reshape(acc0, [W_R, W_K, 8, 4]), axis=3), axis=1)                     # rows 0..7
    r1 = tl.sum(tl.sum(tl.reshape(acc1, [W_R, W_K, 8, 4]), axis=3), axis=1)                     # rows 8..15
    if RT == 1:
        return tl.reshape(tl.permute(tl.join(r0, r1), (0, 2, 1)), [16 * W_R])
    else:
        r2 = tl.sum(tl.sum(tl.reshape(acc2, [W_R, W_K, 8, 4]), axis=3), axis=1)                 # rows 16..23
        r3 = tl.sum(tl.sum(tl.reshape(acc3, [W_R, W_K, 8, 4]), axis=3), axis=1)                 # rows 24..31
        both = tl.join(tl.join(r0, r1), tl.join(r2, r3))                                        # [W_R, 8, half, tile]
        return tl.reshape(tl.permute(both, (0, 3, 2, 1)), [32 * W_R])


@triton.jit
def _hilo_bytes(K):
    return ((K // 32 + 3) // 4) * 512


@triton.jit
def moe_router_hilo(x_ptr, norm_w_ptr, eps, w_ptr, b_ptr, logits_ptr, xh_ptr, E, H, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, STAGES: tl.constexpr, BLOCK_H: tl.constexpr):
    pdl_wait()  # mlp1's programs are placed when this launch ends (pdl_trigger below), not beside its 16 programs
    out, offs_m, m_mask, offs_n, n_mask, inv = _gemv_tile(x_ptr, x_ptr, norm_w_ptr, w_ptr, b_ptr, 1, E, H, eps, 1,
                                                          1, 0, 1, BLOCK_N, BLOCK_K, STAGES, 1)
    tl.store(logits_ptr + offs_n[None, :], out, mask=m_mask[:, None] & n_mask[None, :])
    # each program writes its share of xh, with the 1 / rms its own product computed (the same in every program:
    # the same sums in the same order)
    inv1 = tl.sum(inv, axis=0)
    share = tl.cdiv(H, tl.num_programs(0))
    h_lo = tl.program_id(0) * share
    h_hi = tl.minimum(h_lo + share, H)
    hh = tl.arange(0, BLOCK_H)
    for h0 in range(h_lo, h_hi, BLOCK_H):
        m = (h0 + hh) < h_hi
        v = tl.load(x_ptr + h0 + hh, mask=m, other=0.0) * inv1
        v = v * tl.load(norm_w_ptr + h0 + hh, mask=m, other=0.0).to(tl.float32)
        _store_hilo(xh_ptr, h0 + hh, v, m)
    pdl_trigger()


@triton.jit
def _route_expert(logits_ptr, j, E, BLOCK_E: tl.constexpr):
    """The token's j-th expert (moe.py's routed selection) and its softmax numerator exp(logit - max logit)."""
    e_lanes, vals, taken, first = _route_load(logits_ptr, j * 0, E, BLOCK_E)
    idx = 0
    best = first
    for _j in range(0, j + 1):
        taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
    return idx.to(tl.int64), tl.exp(best - first)


@triton.jit
def moe_mlp1_route_mma(xh_ptr, logits_ptr, E, blocks_ptr, scales_ptr, bias_ptr, acth_ptr, route_ids_ptr, route_u_ptr,
                       H, I, K_TOP, limit, alpha, W_R: tl.constexpr, W_K: tl.constexpr, STAGES: tl.constexpr,
                       BLOCK_E: tl.constexpr, RT: tl.constexpr = 1):
    pdl_begin()
    j = tl.program_id(0)
    grp0 = tl.program_id(1) * W_R
    e, u = _route_expert(logits_ptr, j, E, BLOCK_E)
    if tl.program_id(1) == 0:  # the routing, for mlp2 (which then derives nothing from the logits)
        tl.store(route_ids_ptr + j, e.to(tl.int32))
        tl.store(route_u_ptr + j, u)
    R = 2 * I
    KB = H // 32
    rows = grp0 * 16 * RT + tl.arange(0, 16 * RT * W_R)
    bias = tl.load(bias_ptr + e * R + rows, mask=rows < R, other=0.0).to(tl.float32)  # before the loop: its
    y = _mma_rows(blocks_ptr + e * R * KB * 16, scales_ptr + e * R * KB, xh_ptr, KB, grp0, R // 16, W_R, W_K,
                  STAGES, RT)                                                          # latency is hidden
    y += bias
    gate, up = tl.split(tl.reshape(y, [8 * RT * W_R, 2]))
    cols = grp0 * 8 * RT + tl.arange(0, 8 * RT * W_R)
    act_h = acth_ptr + j.to(tl.int64) * (_hilo_bytes(I) // 2)
    _store_hilo(act_h, cols, _swiglu(gate, up, limit, alpha), cols < I)


@triton.jit
def moe_mlp2_route_mma(acth_ptr, route_ids_ptr, route_u_ptr, blocks_ptr, scales_ptr, bias_ptr, part_ptr, count_ptr,
                       x_ptr, H, I, K_TOP, W_R: tl.constexpr, W_K: tl.constexpr, STAGES: tl.constexpr,
                       RT: tl.constexpr = 1, BLOCK_J: tl.constexpr = 4):  # BLOCK_J: partials loaded at once
    pdl_begin()
    j = tl.program_id(0)
    grp = tl.program_id(1)
    grp0 = grp * W_R
    e = tl.load(route_ids_ptr + j).to(tl.int64)
    KB = I // 32
    act_h = acth_ptr + j.to(tl.int64) * (_hilo_bytes(I) // 2)
    rows = grp0 * 16 * RT + tl.arange(0, 16 * RT * W_R)
    rm = rows < H
    # loaded before the loop, so that their latency is hidden: the expert's bias, and x (only the last program of
    # the row group uses it; nothing else writes these rows of x during this launch)
    bias = tl.load(bias_ptr + e * H + rows, mask=rm, other=0.0).to(tl.float32)
    x_rows = tl.load(x_ptr + rows, mask=rm, other=0.0)
    y = _mma_rows(blocks_ptr + e * H * KB * 16, scales_ptr + e * H * KB, act_h, KB, grp0, H // 16, W_R, W_K, STAGES,
                  RT)
    tl.store(part_ptr + j.to(tl.int64) * H + rows, y + bias, mask=rm)
    tl.debug_barrier()                                  # every thread's partials are written before the count
    done = tl.atomic_add(count_ptr + grp, 1, sem="acq_rel", scope="gpu")
    if done == K_TOP - 1:
        # the softmax over the top-k from mlp1's numerators (the same operations in the same order as deriving it
        # from the logits here: the same bits)
        jv = tl.arange(0, BLOCK_J)
        us = tl.load(route_u_ptr + jv, mask=jv < K_TOP, other=0.0)
        total = 0.0
        for jj in range(0, K_TOP):
            if jj < BLOCK_J:
                total += tl.sum(tl.where(jv == jj, us, 0.0), axis=0)
            else:
                total += tl.load(route_u_ptr + jj)
        out = tl.zeros([16 * RT * W_R], tl.float32)
        # the first BLOCK_J experts' rows (bias included) in one load, not one L2 round trip after another
        parts = tl.load(part_ptr + jv.to(tl.int64)[:, None] * H + rows[None, :],
                        mask=(jv[:, None] < K_TOP) & rm[None, :], other=0.0, cache_modifier=".cg")
        for jj in range(0, K_TOP):                       # experts in increasing j: deterministic
            if jj < BLOCK_J:
                yj = tl.sum(tl.where(jv[:, None] == jj, parts, 0.0), axis=0)                # exact: one term
                uj = tl.sum(tl.where(jv == jj, us, 0.0), axis=0)
            else:
                yj = tl.load(part_ptr + jj * H + rows, mask=rm, other=0.0, cache_modifier=".cg")
                uj = tl.load(route_u_ptr + jj)
            out += (uj / total) * yj
        tl.store(x_ptr + rows, x_rows + out, mask=rm)
        tl.atomic_xchg(count_ptr + grp, 0, sem="relaxed", scope="gpu")


# (W_R row groups, W_K warps along K per group, STAGES units in flight per warp, RT tiles of 16 rows per group) of
# the two products (bench/gpu/moe_mma_lab.py --tiles, H200, 20b shapes, run 44: mlp1 22.1-22.8 us at (4, 1, 4, 1)
# against 22.8-32.5 for the other tiles tried and 25.3-26.1 for the loop before its shared memory was laid out
# without bank conflicts; mlp2 18.5 us at (2, 2, 4, 1) against 18.9-22.3 (before: 20.4); two tiles per warp
# sharing the B operands (RT = 2) were no faster: mlp1 22.8-28.3, mlp2 19.7-22.3)
MLP1_TILE = (4, 1, 4, 1)
MLP2_TILE = (2, 2, 4, 1)

VARIANTS = [
    Variant(name="moe_router_hilo", kernel=moe_router_hilo,
            signature={"x_ptr": "*fp32", "norm_w_ptr": "*bf16", "eps": "fp32", "w_ptr": "*bf16", "b_ptr": "*bf16",
                       "logits_ptr": "*fp32", "xh_ptr": "*bf16", "E": "i32", "H": "i32"},
            constexprs={"BLOCK_N": 2, "BLOCK_K": 1024, "STAGES": 3, "BLOCK_H": 256}, num_warps=2, num_stages=1,
            div16=("H",)),
] + [
    Variant(name=f"moe_mlp1_route_mma_e{be}", kernel=moe_mlp1_route_mma,
            signature={"xh_ptr": "*bf16", "logits_ptr": "*fp32", "E": "i32", "blocks_ptr": "*u8", "scales_ptr": "*u8",
                       "bias_ptr": "*bf16", "acth_ptr": "*bf16", "route_ids_ptr": "*i32", "route_u_ptr": "*fp32",
                       "H": "i32", "I": "i32", "K_TOP": "i32", "limit": "fp32", "alpha": "fp32"},
            constexprs={"W_R": MLP1_TILE[0], "W_K": MLP1_TILE[1], "STAGES": MLP1_TILE[2], "RT": MLP1_TILE[3],
                        "BLOCK_E": be},
            num_warps=MLP1_TILE[0] * MLP1_TILE[1],
            num_stages=1, div16=("H", "I"))
    for be in (32, 128)
] + [
    Variant(name="moe_mlp2_route_mma", kernel=moe_mlp2_route_mma,
            signature={"acth_ptr": "*bf16", "route_ids_ptr": "*i32", "route_u_ptr": "*fp32", "blocks_ptr": "*u8",
                       "scales_ptr": "*u8", "bias_ptr": "*bf16", "part_ptr": "*fp32", "count_ptr": "*i32",
                       "x_ptr": "*fp32", "H": "i32", "I": "i32", "K_TOP": "i32"},
            constexprs={"W_R": MLP2_TILE[0], "W_K": MLP2_TILE[1], "STAGES": MLP2_TILE[2], "RT": MLP2_TILE[3],
                        "BLOCK_J": 4},
            num_warps=MLP2_TILE[0] * MLP2_TILE[1],
            num_stages=1, div16=("H", "I"))
]
