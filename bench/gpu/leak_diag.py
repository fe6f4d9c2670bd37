"""Does anything keep an Engine and its Model alive after `del`? (the sanitizer's leak records)

    python bench/gpu/leak_diag.py MODEL [cpu|cuda]

Runs four short requests through an Engine, drops the Engine and then the Model, collects, and
says whether either is still alive; if one is, prints what refers to it, a few levels up. Under
`compute-sanitizer --leak-check full` with its default host backtraces, the Python frames of the
calls it took backtraces in stay referenced until exit (a list of frames held by the tool), and
the Engine with them (its `run` frame): that is where the 5 "leaked" allocations of the sanitize
check came from. With `--show-backtrace device` nothing is kept (bench/gpu/leak_diag.sh runs both).
"""

import gc
import sys
import weakref

import gpt_oss_native as gon


def referrers(obj, depth: int, seen: set, indent: str = "  ") -> None:
    """Prints what refers to obj, `depth` levels up (this function's own frames left out)."""
    if depth == 0:
        return
    for r in gc.get_referrers(obj):
        if id(r) in seen or (type(r).__name__ == "frame" and r.f_code.co_name == "referrers"):
            continue
        seen.add(id(r))
        where = f" {r.f_code.co_filename}:{r.f_lineno} {r.f_code.co_name}" if type(r).__name__ == "frame" else ""
        print(f"{indent}<- {type(r).__name__}{where} {str(r)[:160]}")
        referrers(r, depth - 1, seen, indent + "  ")


def main() -> None:
    path, device = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cuda"
    model = gon.Model(path, device=device)
    engine = gon.Engine(model, max_sequences=4, context_length=128, max_batch_tokens=32, text=False)
    for i in range(4):
        engine.submit(list(range(5 + 7 * i)), max_tokens=6, temperature=0.0)
    engine.run()
    engine_ref, model_ref = weakref.ref(engine), weakref.ref(model)
    del engine
    gc.collect()
    print("engine alive:", engine_ref() is not None)
    if engine_ref() is not None:
        referrers(engine_ref(), 5, set())
    del model
    gc.collect()
    print("model alive:", model_ref() is not None)


if __name__ == "__main__":
    main()
