// Arena: one block of backend memory, carved into named buffers when a Context
// is created and never grown afterwards.
//
// Buffers are first planned (plan() records sizes and returns offsets), then the
// block is allocated once (commit()), then pointers are resolved. After commit
// nothing more can be carved: carve attempts are counted in late_allocations
// and refused with kInternal, so a test can assert the hot path never asks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/backend.hpp"
#include "core/check.hpp"

namespace gon {

class Arena {
 public:
  Arena(Backend& backend, bool host_visible) : backend_(backend), host_visible_(host_visible) {}
  ~Arena() {
    if (base_ != nullptr) backend_.release(base_, host_visible_);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Reserves `bytes` (64-byte aligned) and returns the offset of the buffer.
  size_t plan(size_t bytes) {
    if (base_ != nullptr) {
      ++late_allocations_;
      GON_THROW(kInternal, "arena: buffer requested after the context was created");
    }
    size_t offset = size_;
    size_ += (bytes + 63) & ~size_t{63};
    ++buffers_;
    return offset;
  }
  void commit() {
    base_ = static_cast<char*>(backend_.allocate(size_ > 0 ? size_ : 64, host_visible_));
    ++allocations_;
  }
  template <typename T>
  T* at(size_t offset) const {
    return reinterpret_cast<T*>(base_ + offset);
  }

  size_t size() const { return size_; }
  uint64_t buffers() const { return buffers_; }
  uint64_t allocations() const { return allocations_; }
  uint64_t late_allocations() const { return late_allocations_; }

 private:
  Backend& backend_;
  bool host_visible_;
  char* base_ = nullptr;
  size_t size_ = 0;
  uint64_t buffers_ = 0;
  uint64_t allocations_ = 0;
  uint64_t late_allocations_ = 0;
};

}  // namespace gon
