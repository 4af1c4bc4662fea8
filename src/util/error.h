#pragma once
// One exception type for every user-facing failure: the message names the file (or
// option) and what is wrong, and `cq` prints it on one line and exits non-zero.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace cq {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace cq
