#include "util/json_number.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace cq {

int64_t json_integer(const nlohmann::json& value, const std::string& where, std::string_view what, int64_t min,
                     int64_t max) {
  bool in_range = false;
  int64_t result = 0;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    in_range = u <= static_cast<uint64_t>(max);
    result = in_range ? static_cast<int64_t>(u) : 0;
  } else if (value.is_number_integer()) {
    result = value.get<int64_t>();
    in_range = true;
  } else if (value.is_number_float()) {
    // Only integral values inside int64 (2^63 is the first double beyond it) are converted.
    const double d = value.get<double>();
    in_range = std::isfinite(d) && d == std::trunc(d) && d >= -0x1p63 && d < 0x1p63;
    result = in_range ? static_cast<int64_t>(d) : 0;
  }
  if (!in_range || result < min || result > max) {
    const bool whole_range = min == std::numeric_limits<int64_t>::min() && max == std::numeric_limits<int64_t>::max();
    fail("{}: {} must be an integer{} (got {})", where, what, whole_range ? "" : fmt::format(" in [{}, {}]", min, max),
         value.dump().substr(0, 100));
  }
  return result;
}

int64_t json_integer_or(const nlohmann::json& object, const char* key, int64_t fallback, const std::string& where,
                        int64_t min, int64_t max) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return fallback;
  return json_integer(object[key], where, key, min, max);
}

}  // namespace cq
