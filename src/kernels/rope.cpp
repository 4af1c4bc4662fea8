#include "kernels/rope.h"

#include <cmath>
#include <numbers>

namespace cq::kernels {

namespace {

// Below this many elements an OpenMP region costs more than it saves (tiny models).
constexpr int64_t kParallelElements = int64_t{1} << 15;

}  // namespace

std::vector<float> rope_inverse_frequencies(int64_t head_dim, double theta, const RopeFrequencyScaling& scaling) {
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    double inv_freq = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(exponent)));
    if (scaling.kind == RopeScalingKind::Linear) {
      inv_freq /= scaling.factor;
    } else if (scaling.kind == RopeScalingKind::Llama3) {
      const double old_context = static_cast<double>(scaling.original_context);
      const double low_freq_wavelen = old_context / scaling.low_freq_factor;
      const double high_freq_wavelen = old_context / scaling.high_freq_factor;
      const double wavelen = 2 * std::numbers::pi / inv_freq;
      if (wavelen > low_freq_wavelen) {
        inv_freq /= scaling.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth =
            (old_context / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor);
        inv_freq = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq;
      }
    }
    inv_freqs[static_cast<size_t>(i)] = static_cast<float>(inv_freq);
  }
  return inv_freqs;
}

void apply_rope(float* x, int64_t heads, int64_t head_dim, std::span<const int64_t> positions, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  const int64_t width = heads * head_dim;
  const auto rows = static_cast<int64_t>(positions.size());
#pragma omp parallel for schedule(static) if (rows * width > kParallelElements)
  for (int64_t r = 0; r < rows; ++r) {
    const auto position = static_cast<float>(positions[static_cast<size_t>(r)]);
    float* row = x + r * width;
    for (int64_t i = 0; i < half; ++i) {
      // HF: freqs = position · inv_freq in float32, then cos/sin; rotate_half pairs i with i + d/2.
      const float angle = position * inv_freq[i];
      const auto cos_a = static_cast<float>(std::cos(static_cast<double>(angle)));
      const auto sin_a = static_cast<float>(std::sin(static_cast<double>(angle)));
      for (int64_t h = 0; h < heads; ++h) {
        float* head = row + h * head_dim;
        const float first = head[i];
        const float second = head[i + half];
        head[i] = first * cos_a - second * sin_a;
        head[i + half] = second * cos_a + first * sin_a;
      }
    }
  }
}

}  // namespace cq::kernels
