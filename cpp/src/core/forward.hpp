// The gpt-oss forward pass, written once for every backend over an
// Executor's blocks (backend/executor.hpp):
//   x = embed(tokens)
//   per layer: x += attention(x);  x += moe(x)
//   logits = unembed(rmsnorm(x)) for the output rows, then (optionally) sampling
#pragma once

#include "backend/executor.hpp"

namespace gon {

// The model graph for one step (called by Executor::execute, possibly while
// a GPU backend captures it into a graph).
void forward(Executor& executor, const ModelConfig& config, const StepShape& shape);

// Runs one step on `executor` with the inputs already written to inputs().
void run_step(Executor& executor, const ModelConfig& config, const StepShape& shape);

}  // namespace gon
