"""Compiles every kernel variant (aot.py) into cubins and writes what the C++
CUDA backend embeds. Run by CMake at build time; needs Triton, not a GPU.

    python triton_kernels/build.py OUT_DIR [--archs 80,90,100] [--jobs N]

Writes into OUT_DIR:
  cubins/<variant>.sm<arch>.cubin    one per variant and architecture
  kernels.json                       the manifest: per variant, its function name,
                                     argument names and types, constexprs, launch
                                     metadata, per architecture
  gon_cuda_kernels.S                 the cubins as read-only data (.incbin)
  gon_cuda_kernels.cpp               the manifest as C++ tables (cuda/kernel_table.hpp)
Files are rewritten only when their content changes, so an unchanged rebuild
touches nothing; Triton's own cache (TRITON_CACHE_DIR, under OUT_DIR by
default) makes recompiling an unchanged kernel cheap.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

ARG_BYTES = {"i32": 4, "i64": 8, "fp32": 4, "u64": 8, "u32": 4, "i1": 1, "fp16": 2, "bf16": 2}


def arg_size(ty: str) -> int:
    return 8 if ty.startswith("*") else ARG_BYTES[ty]


def _compile(job):
    name, arch = job
    import aot

    v = {x.name: x for x in aot.all_variants()}[name]
    t0 = time.time()
    cubin, meta = aot.compile_variant(v, arch)
    return name, arch, cubin, meta, time.time() - t0


def write_if_changed(path: Path, data) -> None:
    data = data.encode() if isinstance(data, str) else data
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def c_string(s: str) -> str:
    return json.dumps(s)


def fixed_address_layout() -> bool:
    """Turns off address-space randomization for the processes this one starts (Linux; the flag is inherited
    across fork and exec). Triton's ptxas for sm_100a orders something by address: under randomization the same
    PTX gave different (equivalent: registers renamed) cubins from one run to the next, and so did the wheel;
    with a fixed layout it gives the same bytes every time. Returns whether the flag is set; where it cannot be
    (not Linux, or a sandbox that refuses personality()), the build is as correct, only not byte-reproducible."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    addr_no_randomize = 0x0040000
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(0xFFFFFFFF)  # a query: returns the flags, changes nothing
        if current == -1:
            return False
        return current & addr_no_randomize != 0 or libc.personality(current | addr_no_randomize) != -1
    except (OSError, AttributeError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--archs", default=None, help="comma-separated compute capabilities (default: aot.ARCHS)")
    ap.add_argument("--jobs", type=int, default=0)
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRITON_CACHE_DIR", str(out / "triton-cache"))
    os.environ.setdefault("TRITON_DISABLE_LINE_INFO", "1")
    os.environ.pop("TRITON_INTERPRET", None)
    fixed_address_layout()
    sys.path.insert(0, str(HERE))
    import aot

    import moe_mma
    mma_k_max = moe_mma.K_MAX  # the longest K of the tensor-core expert kernels, for the runtime's checks
    archs = tuple(int(a) for a in args.archs.split(",")) if args.archs else aot.ARCHS
    variants = aot.all_variants()
    jobs = [(v.name, a) for v in variants for a in archs if a in v.archs]
    procs = args.jobs or os.cpu_count() or 1
    t0 = time.time()
    if procs > 1 and len(jobs) > 1:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            results = pool.map(_compile, jobs, chunksize=1)
    else:
        results = [_compile(j) for j in jobs]
    by_name = {v.name: v for v in variants}
    for name, arch, _, meta, _ in results:
        # The C++ launcher passes null scratch pointers and launches one CTA per program.
        if meta["global_scratch_size"] or meta["profile_scratch_size"] or meta["num_ctas"] != 1 \
                or meta["launch_cooperative_grid"]:
            raise SystemExit(f"triton_kernels: {name} (sm_{arch}) needs global scratch, clusters or a cooperative "
                             f"launch, which the runtime does not provide: {meta}")

    manifest = {"triton": __import__("triton").__version__, "variants": {}}
    import hashlib

    digest = hashlib.sha256()
    for r in sorted(results, key=lambda r: (r[0], r[1])):
        digest.update(r[2])
    # The digest makes this file change whenever a cubin does, so the build re-assembles it.
    asm = [f"/* generated by triton_kernels/build.py; cubins sha256 {digest.hexdigest()} */", ".section .rodata",
           ".balign 16"]
    entries = []
    for i, (name, arch, cubin, meta, _) in enumerate(sorted(results, key=lambda r: (r[0], r[1]))):
        v = by_name[name]
        cub_path = out / "cubins" / f"{name}.sm{arch}.cubin"
        write_if_changed(cub_path, cubin)
        rec = manifest["variants"].setdefault(name, {
            "args": [[a, t] for a, t in v.signature.items()],
            "constexprs": {k: int(x) if isinstance(x, bool) else x for k, x in v.constexprs.items()},
            "div16": list(v.div16),
            "archs": {},
        })
        rec["archs"][str(arch)] = {**meta, "cubin": cub_path.name, "cubin_bytes": len(cubin)}
        sym = f"gon_cubin_{i}"
        asm += [f".global {sym}", f".global {sym}_end", f"{sym}:", f'.incbin "{cub_path}"', f"{sym}_end:",
                ".balign 16"]
        entries.append((sym, name, arch, meta, v))
    asm.append('.section .note.GNU-stack,"",@progbits')
    write_if_changed(out / "kernels.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    write_if_changed(out / "gon_cuda_kernels.S", "\n".join(asm) + "\n")

    cpp = ["// Generated by triton_kernels/build.py: do not edit.", '#include "backend/cuda/kernel_table.hpp"', "",
           "extern \"C\" {"]
    for sym, *_ in entries:
        cpp.append(f"extern const unsigned char {sym}[];")
        cpp.append(f"extern const unsigned char {sym}_end[];")
    cpp += ["}", "", "namespace gon::cuda {", "namespace {"]
    for i, (sym, name, arch, meta, v) in enumerate(entries):
        args = ", ".join(f"{{{c_string(a)}, {c_string(t)}, {arg_size(t)}}}" for a, t in v.signature.items())
        cpp.append(f"const KernelArg kArgs{i}[] = {{{args}}};")
        cx = [(k, int(x)) for k, x in v.constexprs.items()]
        if cx:
            cpp.append(f"const KernelConstexpr kConst{i}[] = {{" +
                       ", ".join(f"{{{c_string(k)}, {x}}}" for k, x in cx) + "};")
    cpp.append("const KernelImage kImages[] = {")
    for i, (sym, name, arch, meta, v) in enumerate(entries):
        ncx = len(v.constexprs)
        cpp.append(
            f"  {{{c_string(name)}, {arch}, {c_string(meta['function'])}, {sym}, "
            f"static_cast<size_t>({sym}_end - {sym}), {meta['num_warps']}, {meta['num_ctas']}, {meta['shared']}, "
            f"{meta['global_scratch_size']}, {meta['global_scratch_align']}, {meta['profile_scratch_size']}, "
            f"{'true' if meta['launch_pdl'] else 'false'}, {'true' if meta['launch_cooperative_grid'] else 'false'}, "
            f"kArgs{i}, {len(v.signature)}, {f'kConst{i}' if ncx else 'nullptr'}, {ncx}}},")
    cpp += ["};", "}  // namespace", "",
            "const KernelImage* kernel_images() { return kImages; }",
            f"size_t num_kernel_images() {{ return {len(entries)}; }}",
            f"const char* kernels_triton_version() {{ return {c_string(manifest['triton'])}; }}",
            f"int kernels_mma_k_max() {{ return {int(mma_k_max)}; }}",
            "", "}  // namespace gon::cuda", ""]
    write_if_changed(out / "gon_cuda_kernels.cpp", "\n".join(cpp))
    total = sum(len(r[2]) for r in results)
    print(f"triton_kernels: {len(variants)} variants x {len(archs)} architectures = {len(results)} cubins, "
          f"{total / 1e6:.1f} MB, {time.time() - t0:.1f} s with {procs} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
