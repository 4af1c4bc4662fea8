#include "kernels/gemm_int4.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "util/error.h"

namespace cq::kernels {
namespace {

constexpr int64_t kPanel = PackedInt4Weights::kPanelWidth;
constexpr int64_t kOctet = PackedInt4Weights::kOctet;
constexpr int64_t kQuad = 4;
constexpr int64_t kMaxK = 65536;
constexpr int64_t kPanelOctetBytes = kPanel * kQuad;  // 256 bytes: 64 channels × 8 nibbles
// Rows per VNNI tile: 4 rows × 4 blocks = 16 accumulators plus 8 unpacked weight vectors.
constexpr int kVnniRows = 4;

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

bool worth_threading(int64_t m, const PackedInt4Weights& w) { return m * w.n_padded * w.k_padded >= (int64_t{1} << 18); }

// Octets [begin, end) of group g.
struct OctetRange {
  int64_t begin, end;
};
OctetRange group_octets(const PackedInt4Weights& w, int64_t g) {
  const int64_t per_group = w.group_size / kOctet;
  return {g * per_group, std::min((g + 1) * per_group, w.k_padded / kOctet)};
}

// Activations shared by the SIMD paths: per row and group, Σ_k A_ik over that group's k.
void activation_group_sums(const int8_t* a, int64_t m, int64_t lda, const PackedInt4Weights& w, int32_t* sums) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t g = 0; g < w.groups; ++g) {
      int32_t sum = 0;
      const int64_t end = std::min(w.k, (g + 1) * w.group_size);
      for (int64_t kk = g * w.group_size; kk < end; ++kk) sum += a[i * lda + kk];
      sums[i * w.groups + g] = sum;
    }
  }
}

// The final epilogue step for up to 64 channels of one row.
void finish_row(const float* group_accumulated, int64_t count, float row_scale, const float* bias, float* out) {
  for (int64_t j = 0; j < count; ++j) {
    out[j] = std::fma(group_accumulated[j], row_scale, bias != nullptr ? bias[j] : 0.0f);
  }
}

// One group step for up to 64 channels: f = fma(float(sum − z·asum), s, f).
void accumulate_group(const int32_t* sums, const uint8_t* zero_points, const float* scales, int32_t activation_sum,
                      float* group_accumulated) {
  for (int64_t j = 0; j < kPanel; ++j) {
    const int32_t exact = sums[j] - int32_t{zero_points[j]} * activation_sum;
    group_accumulated[j] = std::fma(static_cast<float>(exact), scales[j], group_accumulated[j]);
  }
}

template <typename Body>
void for_each_tile(int64_t m, const PackedInt4Weights& w, int64_t row_granule, Body body) {
  const int64_t panels = w.panels();
  const int64_t threads = omp_get_max_threads();
  const int64_t row_granules = (m + row_granule - 1) / row_granule;
  const int64_t row_chunks = panels < threads ? std::max<int64_t>(1, std::min(threads, row_granules)) : 1;
  const int64_t rows_per_chunk = (row_granules + row_chunks - 1) / row_chunks * row_granule;
#pragma omp parallel for schedule(static) if (worth_threading(m, w))
  for (int64_t tile = 0; tile < panels * row_chunks; ++tile) {
    const int64_t p = tile / row_chunks;
    const int64_t row_begin = tile % row_chunks * rows_per_chunk;
    body(p, row_begin, std::min(m, row_begin + rows_per_chunk));
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI path.

// Signed activations, K padded with zeros to a multiple of 8, blocks of up to 4 rows
// interleaved per k-quad (as in gemm_int8): byte(r0 + r, 4q + t) = out[r0·Kp + (q·rows + r)·4 + t].
void pack_activations_vnni(const int8_t* a, int64_t m, int64_t lda, int64_t k, int64_t k_padded, int8_t* out) {
  const int64_t kq = k_padded / kQuad;
  const int64_t full_quads = k / kQuad;
  for (int64_t r0 = 0; r0 < m; r0 += kVnniRows) {
    const int64_t rows = std::min<int64_t>(kVnniRows, m - r0);
    int8_t* block = out + r0 * k_padded;
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* src = a + (r0 + r) * lda;
      for (int64_t q = 0; q < full_quads; ++q) std::memcpy(block + (q * rows + r) * kQuad, src + q * kQuad, kQuad);
      for (int64_t q = full_quads; q < kq; ++q) {
        for (int64_t t = 0; t < kQuad; ++t) {
          const int64_t kk = q * kQuad + t;
          block[(q * rows + r) * kQuad + t] = kk < k ? src[kk] : int8_t{0};
        }
      }
    }
  }
}

template <int Rows>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void vnni_tile(
    const int8_t* a_block, const int32_t* activation_sums, const PackedInt4Weights& w, int64_t p,
    const float* row_scales, const float* bias, float* c, int64_t ldc, int64_t valid_cols) {
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  __m512 group_accumulated[Rows][4];
#pragma GCC unroll 4
  for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) group_accumulated[r][v] = _mm512_setzero_ps();
  }
  const uint8_t* panel = w.panel(p);
  const float* panel_scales = w.scales.data() + p * w.groups * kPanel;
  const uint8_t* panel_zeros = w.zero_points.data() + p * w.groups * kPanel;
  for (int64_t g = 0; g < w.groups; ++g) {
    const OctetRange octets = group_octets(w, g);
    __m512i acc[Rows][4];
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_si512();
    }
    const uint8_t* bp = panel + octets.begin * kPanelOctetBytes;
    const int8_t* ap = a_block + octets.begin * 2 * Rows * kQuad;
    for (int64_t o = octets.begin; o < octets.end; ++o) {
      __m512i low[4], high[4];
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m512i packed = _mm512_load_si512(bp + 64 * v);
        low[v] = _mm512_and_si512(packed, low_nibbles);
        high[v] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
      }
#pragma GCC unroll 4
      for (int r = 0; r < Rows; ++r) {
        int32_t quad_low, quad_high;
        std::memcpy(&quad_low, ap + r * kQuad, sizeof quad_low);
        std::memcpy(&quad_high, ap + (Rows + r) * kQuad, sizeof quad_high);
        const __m512i a_low = _mm512_set1_epi32(quad_low);
        const __m512i a_high = _mm512_set1_epi32(quad_high);
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          // Weights (nibbles 0..15) are the unsigned operand, activations the signed one.
          acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], low[v], a_low);
          acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], high[v], a_high);
        }
      }
      bp += kPanelOctetBytes;
      ap += 2 * Rows * kQuad;
    }
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m512i zeros = _mm512_maskz_cvtepu8_epi32(0xFFFF, 
          _mm_load_si128(reinterpret_cast<const __m128i*>(panel_zeros + g * kPanel + 16 * v)));
      const __m512 scales = _mm512_load_ps(panel_scales + g * kPanel + 16 * v);
#pragma GCC unroll 4
      for (int r = 0; r < Rows; ++r) {
        const __m512i correction = _mm512_mullo_epi32(zeros, _mm512_set1_epi32(activation_sums[r * w.groups + g]));
        const __m512 exact = _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_sub_epi32(acc[r][v], correction));
        group_accumulated[r][v] = _mm512_fmadd_ps(exact, scales, group_accumulated[r][v]);
      }
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    const int64_t lanes = std::clamp<int64_t>(valid_cols - 16 * v, 0, 16);
    if (lanes == 0) break;
    const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
    const __m512 bv = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r) {
      _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask,
                            _mm512_fmadd_ps(group_accumulated[r][v], _mm512_set1_ps(row_scales[r]), bv));
    }
  }
}

// Decode (M = 1): `Panels` consecutive panels at once, as gemm_int8's GEMV does, so each core
// keeps four weight streams in flight (the M-row tile reads one panel at a time, one stream
// per core, and left DRAM bandwidth unused on a quiet machine), with 16 independent
// accumulators. The unpack is cheap next to that: from L2 this loop runs ~70 GB/s of packed
// weights per core. The float steps are those of vnni_tile, so the result is the same bit
// for bit.
template <int Panels>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void vnni_gemv(
    const int8_t* a_packed, const int32_t* activation_sums, const PackedInt4Weights& w, int64_t first_panel,
    float row_scale, const float* bias, float* c) {
  const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
  alignas(64) float group_accumulated[Panels][kPanel] = {};
  const uint8_t* panels[Panels];
#pragma GCC unroll 4
  for (int i = 0; i < Panels; ++i) panels[i] = w.panel(first_panel + i);
  for (int64_t g = 0; g < w.groups; ++g) {
    const OctetRange octets = group_octets(w, g);
    __m512i acc[Panels][4];
#pragma GCC unroll 4
    for (int i = 0; i < Panels; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_si512();
    }
    for (int64_t o = octets.begin; o < octets.end; ++o) {
      int32_t quad_low, quad_high;
      std::memcpy(&quad_low, a_packed + o * kOctet, sizeof quad_low);
      std::memcpy(&quad_high, a_packed + o * kOctet + kQuad, sizeof quad_high);
      const __m512i a_low = _mm512_set1_epi32(quad_low);
      const __m512i a_high = _mm512_set1_epi32(quad_high);
#pragma GCC unroll 4
      for (int i = 0; i < Panels; ++i) {
        const uint8_t* bp = panels[i] + o * kPanelOctetBytes;
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const __m512i packed = _mm512_load_si512(bp + 64 * v);
          const __m512i high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
          acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], _mm512_and_si512(packed, low_nibbles), a_low);
          acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], high, a_high);
        }
      }
    }
    const __m512i activation_sum = _mm512_set1_epi32(activation_sums[g]);
#pragma GCC unroll 4
    for (int i = 0; i < Panels; ++i) {
      const int64_t at = ((first_panel + i) * w.groups + g) * kPanel;
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        // The maskz forms keep GCC 12's -Wmaybe-uninitialized quiet (as in vnni_tile).
        const __m512i zeros = _mm512_maskz_cvtepu8_epi32(
            0xFFFF, _mm_load_si128(reinterpret_cast<const __m128i*>(w.zero_points.data() + at + 16 * v)));
        const __m512 exact =
            _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_sub_epi32(acc[i][v], _mm512_mullo_epi32(zeros, activation_sum)));
        float* f = group_accumulated[i] + 16 * v;
        _mm512_store_ps(f, _mm512_fmadd_ps(exact, _mm512_load_ps(w.scales.data() + at + 16 * v), _mm512_load_ps(f)));
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < Panels; ++i) {
    const int64_t col0 = (first_panel + i) * kPanel;
    finish_row(group_accumulated[i], std::min(kPanel, w.n - col0), row_scale, bias != nullptr ? bias + col0 : nullptr,
               c + col0);
  }
}

constexpr int kGemvPanels = 4;
using VnniGemv = void (*)(const int8_t*, const int32_t*, const PackedInt4Weights&, int64_t, float, const float*, float*);
constexpr VnniGemv kVnniGemvs[kGemvPanels + 1] = {nullptr, vnni_gemv<1>, vnni_gemv<2>, vnni_gemv<3>, vnni_gemv<4>};

using VnniTile = void (*)(const int8_t*, const int32_t*, const PackedInt4Weights&, int64_t, const float*,
                          const float*, float*, int64_t, int64_t);
constexpr VnniTile kVnniTiles[kVnniRows + 1] = {nullptr, vnni_tile<1>, vnni_tile<2>, vnni_tile<3>, vnni_tile<4>};

void gemm_int4_vnni(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt4Weights& w,
                    const float* bias, float* c, int64_t ldc) {
  static thread_local AlignedBuffer<int8_t> a_scratch;
  static thread_local AlignedBuffer<int32_t> sums_scratch;
  int8_t* a_packed = a_scratch.reserve(static_cast<size_t>(m * w.k_padded));
  int32_t* activation_sums = sums_scratch.reserve(static_cast<size_t>(m * w.groups));
  pack_activations_vnni(a, m, lda, w.k, w.k_padded, a_packed);
  activation_group_sums(a, m, lda, w, activation_sums);
  if (m == 1) {
    const int64_t streams = (w.panels() + kGemvPanels - 1) / kGemvPanels;
#pragma omp parallel for schedule(static) if (worth_threading(m, w))
    for (int64_t stream = 0; stream < streams; ++stream) {
      const int64_t first = stream * kGemvPanels;
      kVnniGemvs[std::min<int64_t>(kGemvPanels, w.panels() - first)](a_packed, activation_sums, w, first,
                                                                     row_scales[0], bias, c);
    }
    return;
  }
  for_each_tile(m, w, kVnniRows, [&](int64_t p, int64_t row_begin, int64_t row_end) {
    const int64_t col0 = p * kPanel;
    const int64_t valid_cols = std::min(kPanel, w.n - col0);
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kVnniRows) {
      const int64_t rows = std::min<int64_t>(kVnniRows, row_end - r0);
      kVnniTiles[rows](a_packed + r0 * w.k_padded, activation_sums + r0 * w.groups, w, p, row_scales + r0,
                       bias != nullptr ? bias + col0 : nullptr, c + r0 * ldc + col0, ldc, valid_cols);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// AVX2 path: nibbles and activations widened to int16, vpmaddwd (exact).

// Channel sums of one activation row (int16, padded) over octets [begin, end) of one panel.
__attribute__((target("avx2,fma"))) void avx2_group_sums(const int16_t* a_row, const uint8_t* panel,
                                                         OctetRange octets, int32_t* sums) {
  const __m128i low_nibbles = _mm_set1_epi8(0x0F);
  for (int64_t half = 0; half < 2; ++half) {  // 32 channels = 8 chunks of 4 channels
    __m256i acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_si256();
    const uint8_t* bp = panel + octets.begin * kPanelOctetBytes + half * 128;
    for (int64_t o = octets.begin; o < octets.end; ++o) {
      int64_t quad_low, quad_high;
      std::memcpy(&quad_low, a_row + o * kOctet, sizeof quad_low);
      std::memcpy(&quad_high, a_row + o * kOctet + kQuad, sizeof quad_high);
      const __m256i a_low = _mm256_set1_epi64x(quad_low);
      const __m256i a_high = _mm256_set1_epi64x(quad_high);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m128i packed = _mm_load_si128(reinterpret_cast<const __m128i*>(bp + 16 * j));
        const __m256i low = _mm256_cvtepu8_epi16(_mm_and_si128(packed, low_nibbles));
        const __m256i high = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles));
        acc[j] = _mm256_add_epi32(acc[j], _mm256_add_epi32(_mm256_madd_epi16(low, a_low), _mm256_madd_epi16(high, a_high)));
      }
      bp += kPanelOctetBytes;
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m256i pair_sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2 * j], acc[2 * j + 1]), 0xD8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + half * 32 + 8 * j), pair_sums);
    }
  }
}

void gemm_int4_avx2(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt4Weights& w,
                    const float* bias, float* c, int64_t ldc) {
  static thread_local AlignedBuffer<int16_t> a_scratch;
  static thread_local AlignedBuffer<int32_t> sums_scratch;
  int16_t* a16 = a_scratch.reserve(static_cast<size_t>(m * w.k_padded));
  int32_t* activation_sums = sums_scratch.reserve(static_cast<size_t>(m * w.groups));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = 0; kk < w.k_padded; ++kk) a16[i * w.k_padded + kk] = kk < w.k ? a[i * lda + kk] : int16_t{0};
  }
  activation_group_sums(a, m, lda, w, activation_sums);
  for_each_tile(m, w, 1, [&](int64_t p, int64_t row_begin, int64_t row_end) {
    const int64_t col0 = p * kPanel;
    alignas(64) int32_t sums[kPanel];
    alignas(64) float group_accumulated[kPanel];
    for (int64_t i = row_begin; i < row_end; ++i) {
      std::fill(group_accumulated, group_accumulated + kPanel, 0.0f);
      for (int64_t g = 0; g < w.groups; ++g) {
        avx2_group_sums(a16 + i * w.k_padded, w.panel(p), group_octets(w, g), sums);
        accumulate_group(sums, w.zero_points.data() + (p * w.groups + g) * kPanel,
                         w.scales.data() + (p * w.groups + g) * kPanel, activation_sums[i * w.groups + g],
                         group_accumulated);
      }
      finish_row(group_accumulated, std::min(kPanel, w.n - col0), row_scales[i],
                 bias != nullptr ? bias + col0 : nullptr, c + i * ldc + col0);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Portable scalar path over the packed layout.

void gemm_int4_scalar(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt4Weights& w,
                      const float* bias, float* c, int64_t ldc) {
  std::vector<int32_t> activation_sums(static_cast<size_t>(m * w.groups));
  activation_group_sums(a, m, lda, w, activation_sums.data());
  for_each_tile(m, w, 1, [&](int64_t p, int64_t row_begin, int64_t row_end) {
    const int64_t col0 = p * kPanel;
    std::vector<int32_t> a_row(static_cast<size_t>(w.k_padded));
    int32_t sums[kPanel];
    float group_accumulated[kPanel];
    for (int64_t i = row_begin; i < row_end; ++i) {
      for (int64_t kk = 0; kk < w.k_padded; ++kk) a_row[kk] = kk < w.k ? a[i * lda + kk] : 0;
      std::fill(group_accumulated, group_accumulated + kPanel, 0.0f);
      for (int64_t g = 0; g < w.groups; ++g) {
        std::fill(sums, sums + kPanel, 0);
        const OctetRange octets = group_octets(w, g);
        for (int64_t o = octets.begin; o < octets.end; ++o) {
          const uint8_t* bp = w.panel(p) + o * kPanelOctetBytes;
          const int32_t* ao = a_row.data() + o * kOctet;
          for (int64_t ch = 0; ch < kPanel; ++ch) {
            for (int64_t t = 0; t < kQuad; ++t) {
              const uint8_t byte = bp[ch * kQuad + t];
              sums[ch] += ao[t] * (byte & 0x0F) + ao[kQuad + t] * (byte >> 4);
            }
          }
        }
        accumulate_group(sums, w.zero_points.data() + (p * w.groups + g) * kPanel,
                         w.scales.data() + (p * w.groups + g) * kPanel, activation_sums[i * w.groups + g],
                         group_accumulated);
      }
      finish_row(group_accumulated, std::min(kPanel, w.n - col0), row_scales[i],
                 bias != nullptr ? bias + col0 : nullptr, c + i * ldc + col0);
    }
  });
}

int64_t group_count(int64_t k, int64_t group_size) {
  return group_size > 0 ? (std::max<int64_t>(k, 1) + group_size - 1) / group_size : 1;
}

}  // namespace

PackedInt4Weights allocate_int4_weights(int64_t n, int64_t k, int64_t group_size, bool asymmetric) {
  if (n < 0 || k < 0) fail("pack_int4_weights: bad shape N={} K={}", n, k);
  if (k > kMaxK) fail("pack_int4_weights: K={} exceeds {} (int32 accumulators could overflow)", k, kMaxK);
  if (group_size < 0 || group_size % kOctet != 0) {
    fail("pack_int4_weights: group size {} must be 0 (per-channel) or a positive multiple of 8", group_size);
  }
  PackedInt4Weights w;
  w.n = n;
  w.k = k;
  w.k_padded = round_up(std::max<int64_t>(k, 1), kOctet);
  w.n_padded = round_up(std::max<int64_t>(n, 1), kPanel);
  w.group_size = group_size > 0 ? group_size : w.k_padded;
  w.groups = group_count(k, group_size);
  w.asymmetric = asymmetric;
  w.data.resize(static_cast<size_t>(w.n_padded * w.k_padded / 2));
  w.scales.resize(static_cast<size_t>(w.n_padded * w.groups));
  w.zero_points.resize(static_cast<size_t>(w.n_padded * w.groups));
  return w;
}

void pack_int4_panel(const int8_t* codes, int64_t ldq, const float* scales, const int8_t* zero_points,
                     int64_t panel_index, PackedInt4Weights& w) {
  if ((zero_points != nullptr) != w.asymmetric) fail("pack_int4_panel: zero points given for symmetric weights or missing");
  const int code_min = w.asymmetric ? 0 : -8;
  const int code_max = w.asymmetric ? 15 : 7;
  const int code_offset = w.asymmetric ? 0 : 8;  // nibble u = q + offset, zero point = offset
  const int64_t rows = std::clamp<int64_t>(w.n - panel_index * kPanel, 0, kPanel);
  // Validate first so that a bad code leaves the panel as it was.
  for (int64_t ch = 0; ch < rows; ++ch) {
    for (int64_t kk = 0; kk < w.k; ++kk) {
      const int q = codes[ch * ldq + kk];
      if (q < code_min || q > code_max) {
        fail("pack_int4_weights: code {} at ({}, {}) outside [{}, {}]", q, panel_index * kPanel + ch, kk, code_min,
             code_max);
      }
    }
    for (int64_t g = 0; w.asymmetric && g < w.groups; ++g) {
      const int z = zero_points[ch * w.groups + g];
      if (z < 0 || z > 15) fail("pack_int4_weights: zero point {} at ({}, {}) outside [0, 15]", z, panel_index * kPanel + ch, g);
    }
  }
  uint8_t* panel = w.data.data() + panel_index * kPanel * w.k_padded / 2;
  const int64_t octets = w.k_padded / kOctet;
  for (int64_t ch = 0; ch < kPanel; ++ch) {
    const bool real = ch < rows;
    const auto nibble = [&](int64_t kk) -> unsigned {
      return real && kk < w.k ? static_cast<unsigned>(codes[ch * ldq + kk] + code_offset) : 0u;
    };
    for (int64_t o = 0; o < octets; ++o) {
      for (int64_t t = 0; t < kQuad; ++t) {
        const int64_t kk = o * kOctet + t;
        panel[o * kPanelOctetBytes + ch * kQuad + t] = static_cast<uint8_t>(nibble(kk) | nibble(kk + kQuad) << 4);
      }
    }
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t at = (panel_index * w.groups + g) * kPanel + ch;
      w.scales[at] = real ? scales[ch * w.groups + g] : 0.0f;
      w.zero_points[at] = static_cast<uint8_t>(!real ? 0 : w.asymmetric ? zero_points[ch * w.groups + g] : code_offset);
    }
  }
}

PackedInt4Weights pack_int4_weights(const int8_t* codes, int64_t n, int64_t k, int64_t ldq, const float* scales,
                                    int64_t group_size, const int8_t* zero_points) {
  if (ldq < k) fail("pack_int4_weights: bad shape N={} K={} ldq={}", n, k, ldq);
  PackedInt4Weights w = allocate_int4_weights(n, k, group_size, zero_points != nullptr);
  for (int64_t p = 0; p < w.panels(); ++p) {
    const int64_t first = p * kPanel;
    const bool any = first < n;  // n = 0 still has one (padding) panel
    pack_int4_panel(any ? codes + first * ldq : codes, ldq, any ? scales + first * w.groups : scales,
                    any && zero_points != nullptr ? zero_points + first * w.groups : zero_points, p, w);
  }
  return w;
}

GemmPath resolve_int4_gemm_path(int64_t /*m*/, const PackedInt4Weights& /*w*/, GemmPath requested) {
  if (requested == GemmPath::Auto) requested = gemm_path();
  if (requested != GemmPath::Auto) return requested;
  if (cpu_has_avx512_vnni()) return GemmPath::Avx512Vnni;
  if (cpu_has_avx2_fma()) return GemmPath::Avx2;
  return GemmPath::Scalar;
}

void gemm_int4(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt4Weights& w,
               const float* bias, float* c, int64_t ldc, GemmPath path) {
  if (m < 0 || lda < w.k || ldc < w.n) fail("gemm_int4: bad shape M={} lda={} ldc={} (K={} N={})", m, lda, ldc, w.k, w.n);
  if (m == 0 || w.n == 0) return;
  const GemmPath resolved = resolve_int4_gemm_path(m, w, path);
  if (resolved == GemmPath::OneDnn) fail("gemm_int4: there is no oneDNN INT4 path");
  if (!gemm_path_supported(resolved)) fail("gemm_int4: path '{}' is not supported on this CPU", to_string(resolved));
  switch (resolved) {
    case GemmPath::Avx512Vnni: return gemm_int4_vnni(a, m, lda, row_scales, w, bias, c, ldc);
    case GemmPath::Avx2: return gemm_int4_avx2(a, m, lda, row_scales, w, bias, c, ldc);
    default: return gemm_int4_scalar(a, m, lda, row_scales, w, bias, c, ldc);
  }
}

void gemm_int4_reference(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const int8_t* codes,
                         int64_t n, int64_t k, int64_t ldq, const float* scales, int64_t group_size,
                         const int8_t* zero_points, const float* bias, float* c, int64_t ldc) {
  const int64_t groups = group_count(k, group_size);
  const int64_t span = group_size > 0 ? group_size : std::max<int64_t>(k, 1);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float accumulated = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int32_t zero = zero_points != nullptr ? zero_points[j * groups + g] : 0;
        int32_t sum = 0;
        for (int64_t kk = g * span; kk < std::min(k, (g + 1) * span); ++kk) {
          sum += int32_t{a[i * lda + kk]} * (int32_t{codes[j * ldq + kk]} - zero);
        }
        accumulated = std::fma(static_cast<float>(sum), scales[j * groups + g], accumulated);
      }
      c[i * ldc + j] = std::fma(accumulated, row_scales[i], bias != nullptr ? bias[j] : 0.0f);
    }
  }
}

}  // namespace cq::kernels
