// A read-only memory map of a whole file.
//
// Checkpoints are tens of gigabytes; we map them instead of reading them, so
// weights are paged in on first use and shared with the page cache. A
// MappedFile is held by shared_ptr so that anything pointing into the mapping
// (tensor views) can keep it alive. POSIX only (Linux, macOS).
//
// Caveat of every mmap-based reader: if another process truncates the file
// while it is mapped, touching the lost pages raises SIGBUS. Checkpoints are
// expected not to change while loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "gpt_oss_native/error.hpp"

namespace gon {

class MappedFile {
 public:
  // Opens and maps `path` (PROT_READ, MAP_PRIVATE). Throws gon::Error:
  //   kFileNotFound  the path (or a directory on it) does not exist;
  //   kIoError       it is a directory or not a regular file, cannot be opened
  //                  (permissions, ...), or cannot be mapped;
  //   kInvalidArgument the path contains a NUL byte.
  // The message names the path and the system's reason. A zero-length file is
  // valid: size() is 0 and data() is nullptr.
  static std::shared_ptr<MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hints to the kernel about [offset, offset + len) (clamped to the file and
  // widened to whole pages). Best effort: errors are ignored.
  void advise_willneed(size_t offset, size_t len) const;    // start reading it in now
  void advise_sequential(size_t offset, size_t len) const;  // will be read once, in order
  void advise_random(size_t offset, size_t len) const;      // will be read in random order

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  void advise(size_t offset, size_t len, int advice) const;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace gon
