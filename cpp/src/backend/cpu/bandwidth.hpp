// Measures how fast this machine's CPUs read memory: the physical floor that
// decode speed is reported against (bytes per token / read bandwidth).
#pragma once

#include <cstddef>

namespace gon::cpu {

// Best read bandwidth in bytes/s over `repeats` passes of summing a buffer of
// `bytes` with `threads` threads (0 = one per core).
double measure_read_bandwidth(size_t bytes, int threads, int repeats);

}  // namespace gon::cpu
