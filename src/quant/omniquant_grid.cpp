#include "quant/omniquant_grid.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace cq {

namespace {
// OmniQuant's CLIPMIN and its clamps of the scale and the zero point.
constexpr float kMinimumScale = 1e-5f;
constexpr float kMaximumScale = 1e4f;
constexpr float kZeroPointBound = 1e4f;
}  // namespace

OmniQuantGrid omniquant_grid(float low, float high, int bits) {
  if (bits < 2 || bits > 8) fail("OmniQuant grid: {} bits is outside 2..8", bits);
  OmniQuantGrid grid;
  grid.max_code = static_cast<float>((1 << bits) - 1);
  grid.scale = std::clamp((high - low) / grid.max_code, kMinimumScale, kMaximumScale);
  grid.zero_point = std::nearbyint(std::clamp(-low / grid.scale, -kZeroPointBound, kZeroPointBound));
  return grid;
}

void omniquant_fake_quantize_run(float* x, int64_t n, float low, float high, int bits, OmniQuantRunCounts& counts) {
  const OmniQuantGrid grid = omniquant_grid(low, high, bits);
  for (int64_t j = 0; j < n; ++j) x[j] = omniquant_value(omniquant_code(x[j], grid, counts), grid);
}

}  // namespace cq
