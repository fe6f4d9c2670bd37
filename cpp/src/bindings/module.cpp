// Definition of the extension module gpt_oss_native._core.
#include "bindings/bindings.hpp"

#include "gpt_oss_native/version.hpp"

NB_MODULE(_core, m) {
  m.doc() = "gpt-oss-native runtime (C++). Use the gpt_oss_native package rather than this module.";
  m.attr("__version__") = gon::kVersion;
  // Arrays handed out by the runtime (logits, tokens) keep their Context alive;
  // one still referenced at interpreter exit (a torch tensor from
  // torch.from_dlpack(ctx.logits) in a global, say) is freed with the process,
  // which is not a leak worth a warning.
  nanobind::set_leak_warnings(false);
  gon::bindings::init_errors(m);
  gon::bindings::init_model(m);
  gon::bindings::init_context(m);
  gon::bindings::init_utils(m);
  gon::bindings::init_tokenizer(m);
  gon::bindings::init_harmony(m);
  gon::bindings::init_generate(m);
  gon::bindings::init_engine(m);
}
