#pragma once
// A heap array aligned to a cache line (64 bytes), so packed weight panels never split
// a 512-bit load across two lines. Movable, not copyable; contents are uninitialised
// after construction/resize (the packers write every byte they later read).
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace cq::kernels {

template <typename T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) { resize(count); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~AlignedBuffer() { release(); }

  // Discards the contents when the size changes.
  void resize(std::size_t count) {
    if (count == size_) return;
    release();
    if (count > 0) {
      data_ = static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t(kAlignment)));
      size_ = count;
    }
  }
  // Grows (never shrinks) a scratch buffer; contents are discarded on growth.
  T* reserve(std::size_t count) {
    if (count > size_) resize(count);
    return data_;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }

 private:
  void release() {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t(kAlignment));
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace cq::kernels
