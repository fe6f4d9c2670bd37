// Fuzz target for the safetensors header validator (parse_safetensors).
//
// Any input must either parse into a header whose every tensor lies inside the
// input without overlaps, or throw gon::Error with kCorruptCheckpoint /
// kUnsupportedCheckpoint. Crashes, sanitizer reports, other exceptions, other
// statuses or an unsound accepted header are findings (we abort on them).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "core/safetensors.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: %s\n", what);
  std::abort();
}

void check_sound(const gon::SafetensorsHeader& h, const uint8_t* data, size_t size) {
  if (h.data_start < 8 || h.data_start > size) finding("data_start outside the input");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  unsigned sum = 0;
  for (const auto& t : h.tensors) {
    if (t.offset < h.data_start || t.offset > size || t.nbytes > size - t.offset) finding("tensor outside the input");
    if (t.shape.size() > gon::kSafetensorsMaxRank) finding("rank above the maximum");
    uint64_t count = 1;
    bool zero = false, overflow = false;
    for (int64_t d : t.shape) {
      if (d < 0) finding("negative dimension accepted");
      if (d == 0) zero = true;
      else if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count)) overflow = true;
    }
    if (zero) count = 0;
    else if (overflow) finding("element count overflow accepted");
    uint64_t nbytes;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(gon::dtype_size(t.dtype)), &nbytes) || nbytes != t.nbytes)
      finding("nbytes does not match the shape");
    if (t.nbytes > 0) {
      // Touch the first and last byte so that ASan sees any out-of-bounds range.
      sum += data[t.offset] + data[t.offset + t.nbytes - 1];
      ranges.emplace_back(t.offset, t.offset + t.nbytes);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) finding("overlapping tensors accepted");
  std::vector<const std::string*> names;
  for (const auto& t : h.tensors) names.push_back(&t.name);
  std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
  for (size_t i = 1; i < names.size(); ++i)
    if (*names[i] == *names[i - 1]) finding("duplicate tensor names accepted");
  asm volatile("" : : "r"(sum));  // keep the touches
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const gon::SafetensorsHeader h = gon::parse_safetensors(data, size, "fuzz.safetensors");
    check_sound(h, data, size);
  } catch (const gon::Error& e) {
    if (e.status() != gon::Status::kCorruptCheckpoint && e.status() != gon::Status::kUnsupportedCheckpoint) {
      std::fprintf(stderr, "unexpected status %s: %s\n", gon::status_name(e.status()), e.what());
      finding("unexpected status");
    }
  }
  return 0;
}
