#pragma once
// OmniQuant's asymmetric uniform grid (its UniformAffineQuantizer with a zero point), shared
// by its dynamic per-token activation quantizer (per_token_asymmetric.cpp) and its weight
// quantizer with learnable clipping (ptq/omniquant.cpp). For a run of values with range
// [low, high] (the run's min and max; LWC multiplies them by sigmoid factors first):
//   scale = clamp((high − low) / (2^N − 1), 1e-5, 1e4)
//   zero  = round(clamp(−low / scale, −1e4, 1e4))          (not clamped to [0, 2^N − 1])
//   code  = clamp(round(x / scale) + zero, 0, 2^N − 1),   x̂ = (code − zero) · scale
// Rounding is half to even (torch.round). The range is not widened to include 0.
#include <cmath>
#include <cstdint>

namespace cq {

struct OmniQuantGrid {
  float scale = 1.f;
  float zero_point = 0.f;
  float max_code = 15.f;  // 2^N − 1
};

OmniQuantGrid omniquant_grid(float low, float high, int bits);

// Counts kept by a run (kernel: codes equal to the zero point, i.e. values that become 0).
struct OmniQuantRunCounts {
  int64_t kernel = 0;
  int64_t clipped = 0;
};

inline float omniquant_code(float x, const OmniQuantGrid& grid, OmniQuantRunCounts& counts) {
  const float shifted = std::nearbyint(x / grid.scale) + grid.zero_point;
  const float code = shifted < 0.f ? 0.f : (shifted > grid.max_code ? grid.max_code : shifted);
  if (code != shifted) ++counts.clipped;
  if (code == grid.zero_point) ++counts.kernel;
  return code;
}

inline float omniquant_value(float code, const OmniQuantGrid& grid) { return (code - grid.zero_point) * grid.scale; }

// Fake-quantizes x[0..n) in place on the grid of [low, high]; adds to counts.
void omniquant_fake_quantize_run(float* x, int64_t n, float low, float high, int bits, OmniQuantRunCounts& counts);

}  // namespace cq
