#pragma once
// Integers read from a user's JSON file. nlohmann's get<int64_t>() converts a floating-point
// number with a cast, which is undefined behaviour when it is out of range (a config claiming
// "vocab_size": 5e112; fuzz_config finding) and silently truncates 64.5 to 64; these refuse
// both, naming the file and the field.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace cq {

// The integer `value` holds (a float with an integral value, such as 2048.0, is accepted), in
// [min, max]; otherwise throws cq::Error "WHERE: WHAT must be an integer ... (got VALUE)".
int64_t json_integer(const nlohmann::json& value, const std::string& where, std::string_view what,
                     int64_t min = std::numeric_limits<int64_t>::min(), int64_t max = std::numeric_limits<int64_t>::max());

// object[key] as json_integer, or `fallback` when the key is absent or null.
int64_t json_integer_or(const nlohmann::json& object, const char* key, int64_t fallback, const std::string& where,
                        int64_t min = std::numeric_limits<int64_t>::min(), int64_t max = std::numeric_limits<int64_t>::max());

}  // namespace cq
