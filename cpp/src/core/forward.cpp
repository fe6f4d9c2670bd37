// The model graph over executor blocks (see forward.hpp).
#include "core/forward.hpp"

namespace gon {

void forward(Executor& ex, const ModelConfig& c, const StepShape& s) {
  ex.embed_block(s);
  for (int l = 0; l < c.num_layers; ++l) {
    ex.attention_block(l, s);
    ex.moe_block(l, s);
  }
  if (s.num_outputs > 0) ex.output_block(s);
}

void run_step(Executor& ex, const ModelConfig& c, const StepShape& s) {
  // Graph id 1: the whole model, the same work for a given shape every step.
  ex.execute(s, [&c](Executor& e, const StepShape& shape) { forward(e, c, shape); }, 1);
}

}  // namespace gon
