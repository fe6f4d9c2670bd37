// MappedFile: open + fstat + mmap with errors that say which file and why.
#include "core/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <limits>
#include <system_error>

#include "core/check.hpp"

namespace gon {

namespace {

std::string errno_text(int err) { return std::generic_category().message(err); }

struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  if (path.find('\0') != std::string::npos)
    GON_THROW(kInvalidArgument, "file path contains a NUL byte: '", path.c_str(), "...'");
  int fd;
  do {
    // O_NONBLOCK so that opening a FIFO does not hang; it has no effect on
    // regular files, and anything else is rejected below.
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR)
      GON_THROW(kFileNotFound, path, ": file not found (", errno_text(err), ")");
    GON_THROW(kIoError, path, ": cannot open the file: ", errno_text(err));
  }
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    GON_THROW(kIoError, path, ": cannot stat the file: ", errno_text(err));
  }
  if (S_ISDIR(st.st_mode)) GON_THROW(kIoError, path, ": is a directory, expected a file");
  if (!S_ISREG(st.st_mode)) GON_THROW(kIoError, path, ": is not a regular file");
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > std::numeric_limits<size_t>::max())
    GON_THROW(kIoError, path, ": file size ", static_cast<long long>(st.st_size), " cannot be mapped");
  const size_t size = static_cast<size_t>(st.st_size);

  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      GON_THROW(kIoError, path, ": cannot map ", size, " bytes: ", errno_text(err));
    }
    data = static_cast<const uint8_t*>(p);
  }
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::advise(size_t offset, size_t len, int advice) const {
  if (data_ == nullptr || offset >= size_ || len == 0) return;
  if (len > size_ - offset) len = size_ - offset;
  const long page_l = ::sysconf(_SC_PAGESIZE);
  const size_t page = page_l > 0 ? static_cast<size_t>(page_l) : 4096;
  const size_t begin = offset / page * page;  // the mapping itself is page-aligned
  const size_t end = offset + len;            // <= size_, no overflow
  (void)::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, advice);
}

void MappedFile::advise_willneed(size_t offset, size_t len) const { advise(offset, len, MADV_WILLNEED); }
void MappedFile::advise_sequential(size_t offset, size_t len) const { advise(offset, len, MADV_SEQUENTIAL); }
void MappedFile::advise_random(size_t offset, size_t len) const { advise(offset, len, MADV_RANDOM); }

}  // namespace gon
