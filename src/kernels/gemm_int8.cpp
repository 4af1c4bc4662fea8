#include "kernels/gemm_int8.h"

#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/error.h"

namespace cq::kernels {
namespace {

constexpr int64_t kPanel = PackedInt8Weights::kPanelWidth;
constexpr int64_t kQuad = PackedInt8Weights::kQuad;
constexpr int64_t kMaxK = 65536;
// Rows of A per VNNI micro-tile: 6 rows × 64 channels = 24 zmm accumulators, leaving
// registers for the 4 weight vectors and the broadcast activation.
constexpr int kVnniRows = 6;

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// The defined epilogue for one output row of up to 64 channels (see gemm_int8.h).
void dequantize_row(const int32_t* sums, int64_t count, float row_scale, const float* col_scales, const float* bias,
                    float* out) {
  for (int64_t j = 0; j < count; ++j) {
    const float scale = row_scale * col_scales[j];
    out[j] = std::fma(static_cast<float>(sums[j]), scale, bias != nullptr ? bias[j] : 0.0f);
  }
}

// Splits the (panel, row-block) tile space across threads: whole panels per thread when
// there are enough of them (each thread streams its own share of the weights), otherwise
// rows are split too.
struct TileSplit {
  int64_t panels = 0;
  int64_t row_chunks = 1;
  int64_t rows_per_chunk = 0;
  int64_t tiles() const { return panels * row_chunks; }
};

TileSplit split_tiles(int64_t m, int64_t panels, int64_t row_granule) {
  TileSplit split;
  split.panels = panels;
  const int64_t threads = omp_get_max_threads();
  const int64_t row_granules = (m + row_granule - 1) / row_granule;
  if (panels < threads) split.row_chunks = std::max<int64_t>(1, std::min(threads, row_granules));
  split.rows_per_chunk = (row_granules + split.row_chunks - 1) / split.row_chunks * row_granule;
  return split;
}

bool worth_threading(int64_t m, const PackedInt8Weights& w) { return m * w.n_padded * w.k_padded >= (int64_t{1} << 18); }

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI path.

// Activations for the VNNI tiles: A + 128 as unsigned bytes, K padded to a multiple of 4,
// and each block of up to 6 rows interleaved per k-quad so a tile reads one stream:
//   byte(row r0 + r, k = 4q + t) = out[r0·Kp + (q·rows_in_block + r)·4 + t].
void pack_activations_vnni(const int8_t* a, int64_t m, int64_t lda, int64_t k, int64_t k_padded, uint8_t* out) {
  const int64_t kq = k_padded / kQuad;
  const int64_t full_quads = k / kQuad;
  const int64_t blocks = (m + kVnniRows - 1) / kVnniRows;
#pragma omp parallel for schedule(static) if (m * k >= (int64_t{1} << 20))
  for (int64_t block_index = 0; block_index < blocks; ++block_index) {
    const int64_t r0 = block_index * kVnniRows;
    const int64_t rows = std::min<int64_t>(kVnniRows, m - r0);
    uint8_t* block = out + r0 * k_padded;
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* src = a + (r0 + r) * lda;
      // XOR 0x80 maps a signed byte x to the unsigned byte x + 128 (four at a time).
      for (int64_t q = 0; q < full_quads; ++q) {
        uint32_t quad;
        std::memcpy(&quad, src + q * kQuad, sizeof quad);
        quad ^= 0x80808080u;
        std::memcpy(block + (q * rows + r) * kQuad, &quad, sizeof quad);
      }
      // Tail quad: padding is 128 (= 0), though the padded weights are zero anyway.
      for (int64_t q = full_quads; q < kq; ++q) {
        for (int64_t t = 0; t < kQuad; ++t) {
          const int64_t kk = q * kQuad + t;
          block[(q * rows + r) * kQuad + t] = static_cast<uint8_t>(kk < k ? static_cast<uint8_t>(src[kk]) ^ 0x80u : 0x80u);
        }
      }
    }
  }
}

// Epilogue of one row of a tile (64 channels, the first valid_cols stored): remove the +128
// offset, then the defined fma(float(sum), row_scale · col_scale, bias).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline void vnni_store_row(
    const __m512i acc[4], const int32_t* compensation, float row_scale, const float* col_scales, const float* bias,
    float* out, int64_t valid_cols) {
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    const int64_t lanes = std::clamp<int64_t>(valid_cols - 16 * v, 0, 16);
    if (lanes == 0) break;
    const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
    const __m512i comp = _mm512_load_si512(compensation + 16 * v);
    const __m512 cs = _mm512_maskz_loadu_ps(mask, col_scales + 16 * v);
    const __m512 bv = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + 16 * v) : _mm512_setzero_ps();
    // (maskz form: GCC 12 warns about the unmasked intrinsic's undefined source operand)
    const __m512 sum = _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_sub_epi32(acc[v], comp));
    const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(row_scale), cs);
    _mm512_mask_storeu_ps(out + 16 * v, mask, _mm512_fmadd_ps(sum, scale, bv));
  }
}

template <int Rows>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void vnni_tile(
    const uint8_t* a_block, const int8_t* b_panel, int64_t kq, const int32_t* compensation, const float* row_scales,
    const float* col_scales, const float* bias, float* c, int64_t ldc, int64_t valid_cols) {
  __m512i acc[Rows][4];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_setzero_si512();
  }
  const uint8_t* ap = a_block;
  const int8_t* bp = b_panel;
  for (int64_t q = 0; q < kq; ++q) {
    const __m512i b0 = _mm512_load_si512(bp);
    const __m512i b1 = _mm512_load_si512(bp + 64);
    const __m512i b2 = _mm512_load_si512(bp + 128);
    const __m512i b3 = _mm512_load_si512(bp + 192);
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      int32_t quad;
      std::memcpy(&quad, ap + r * kQuad, sizeof quad);
      const __m512i av = _mm512_set1_epi32(quad);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
      acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], av, b2);
      acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], av, b3);
    }
    ap += Rows * kQuad;
    bp += kPanel * kQuad;
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    vnni_store_row(acc[r], compensation, row_scales[r], col_scales, bias, c + r * ldc, valid_cols);
  }
}

// Decode (M = 1): `Panels` consecutive panels at once, so the core keeps several weight
// streams in flight (measured ~20% more DRAM bandwidth per core with 4 than with 1).
template <int Panels>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void vnni_gemv(
    const uint8_t* a, const PackedInt8Weights& w, int64_t first_panel, const float* row_scale,
    const float* col_scales, const float* bias, float* c) {
  const int64_t kq = w.k_padded / kQuad;
  const int8_t* panels[Panels];
  __m512i acc[Panels][4];
#pragma GCC unroll 4
  for (int i = 0; i < Panels; ++i) {
    panels[i] = w.panel(first_panel + i);
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_si512();
  }
  for (int64_t q = 0; q < kq; ++q) {
    int32_t quad;
    std::memcpy(&quad, a + q * kQuad, sizeof quad);
    const __m512i av = _mm512_set1_epi32(quad);
#pragma GCC unroll 4
    for (int i = 0; i < Panels; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], av, _mm512_load_si512(panels[i] + (q * kPanel + 16 * v) * kQuad));
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < Panels; ++i) {
    const int64_t col0 = (first_panel + i) * kPanel;
    vnni_store_row(acc[i], w.compensation.data() + col0, *row_scale, col_scales + col0,
                   bias != nullptr ? bias + col0 : nullptr, c + col0, std::min(kPanel, w.n - col0));
  }
}

constexpr int kGemvPanels = 4;
using VnniGemv = void (*)(const uint8_t*, const PackedInt8Weights&, int64_t, const float*, const float*, const float*,
                          float*);
constexpr VnniGemv kVnniGemvs[kGemvPanels + 1] = {nullptr, vnni_gemv<1>, vnni_gemv<2>, vnni_gemv<3>, vnni_gemv<4>};

using VnniTile = void (*)(const uint8_t*, const int8_t*, int64_t, const int32_t*, const float*, const float*,
                          const float*, float*, int64_t, int64_t);
constexpr VnniTile kVnniTiles[kVnniRows + 1] = {nullptr,        vnni_tile<1>, vnni_tile<2>, vnni_tile<3>,
                                                vnni_tile<4>,   vnni_tile<5>, vnni_tile<6>};

void gemm_int8_vnni(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt8Weights& w,
                    const float* col_scales, const float* bias, float* c, int64_t ldc) {
  static thread_local AlignedBuffer<uint8_t> a_scratch;
  uint8_t* a_packed = a_scratch.reserve(static_cast<size_t>(m * w.k_padded));
  pack_activations_vnni(a, m, lda, w.k, w.k_padded, a_packed);
  if (m == 1) {
    const int64_t groups = (w.panels() + kGemvPanels - 1) / kGemvPanels;
#pragma omp parallel for schedule(static) if (worth_threading(m, w))
    for (int64_t group = 0; group < groups; ++group) {
      const int64_t first = group * kGemvPanels;
      kVnniGemvs[std::min<int64_t>(kGemvPanels, w.panels() - first)](a_packed, w, first, row_scales, col_scales, bias, c);
    }
    return;
  }
  const int64_t kq = w.k_padded / kQuad;
  const TileSplit split = split_tiles(m, w.panels(), kVnniRows);
#pragma omp parallel for schedule(static) if (worth_threading(m, w))
  for (int64_t tile = 0; tile < split.tiles(); ++tile) {
    const int64_t p = tile / split.row_chunks;
    const int64_t row_begin = tile % split.row_chunks * split.rows_per_chunk;
    const int64_t row_end = std::min(m, row_begin + split.rows_per_chunk);
    const int64_t col0 = p * kPanel;
    const int64_t valid_cols = std::min(kPanel, w.n - col0);
    for (int64_t r0 = row_begin; r0 < row_end; r0 += kVnniRows) {
      const int64_t rows = std::min<int64_t>(kVnniRows, row_end - r0);
      kVnniTiles[rows](a_packed + r0 * w.k_padded, w.panel(p), kq, w.compensation.data() + col0, row_scales + r0,
                       col_scales + col0, bias != nullptr ? bias + col0 : nullptr, c + r0 * ldc + col0, ldc,
                       valid_cols);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX2 path: int16 operands, vpmaddwd (exact: each pair sum ≤ 2·127·128).

// 64 channel sums of one activation row (int16, K padded with zeros) against one panel.
__attribute__((target("avx2,fma"))) void avx2_row_panel(const int16_t* a_row, const int8_t* b_panel, int64_t kq,
                                                        int32_t* sums) {
  for (int64_t half = 0; half < 2; ++half) {  // 32 channels = 8 chunks of 4 channels × 4 k
    __m256i acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_si256();
    const int8_t* bp = b_panel + half * 128;
    for (int64_t q = 0; q < kq; ++q) {
      int64_t quad;
      std::memcpy(&quad, a_row + q * kQuad, sizeof quad);
      const __m256i av = _mm256_set1_epi64x(quad);  // a0 a1 a2 a3 repeated per 64 bits
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        // 4 channels × 4 k as int16: lane pairs (c,k0k1), (c,k2k3).
        const __m256i bw = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bp + 16 * j)));
        acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(bw, av));
      }
      bp += kPanel * kQuad;
    }
    // Pairwise sums: hadd gives [c0 c1 d0 d1 | c2 c3 d2 d3]; the 64-bit permute orders it.
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m256i pair_sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2 * j], acc[2 * j + 1]), 0xD8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + half * 32 + 8 * j), pair_sums);
    }
  }
}

void gemm_int8_avx2(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt8Weights& w,
                    const float* col_scales, const float* bias, float* c, int64_t ldc) {
  static thread_local AlignedBuffer<int16_t> a_scratch;
  int16_t* a16 = a_scratch.reserve(static_cast<size_t>(m * w.k_padded));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = 0; kk < w.k_padded; ++kk) a16[i * w.k_padded + kk] = kk < w.k ? a[i * lda + kk] : int16_t{0};
  }
  const int64_t kq = w.k_padded / kQuad;
  const TileSplit split = split_tiles(m, w.panels(), 1);
#pragma omp parallel for schedule(static) if (worth_threading(m, w))
  for (int64_t tile = 0; tile < split.tiles(); ++tile) {
    const int64_t p = tile / split.row_chunks;
    const int64_t row_begin = tile % split.row_chunks * split.rows_per_chunk;
    const int64_t row_end = std::min(m, row_begin + split.rows_per_chunk);
    const int64_t col0 = p * kPanel;
    const int64_t valid_cols = std::min(kPanel, w.n - col0);
    alignas(64) int32_t sums[kPanel];
    for (int64_t i = row_begin; i < row_end; ++i) {
      avx2_row_panel(a16 + i * w.k_padded, w.panel(p), kq, sums);
      dequantize_row(sums, valid_cols, row_scales[i], col_scales + col0, bias != nullptr ? bias + col0 : nullptr,
                     c + i * ldc + col0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Portable scalar path over the packed layout.

void gemm_int8_scalar(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt8Weights& w,
                      const float* col_scales, const float* bias, float* c, int64_t ldc) {
  const int64_t kq = w.k_padded / kQuad;
#pragma omp parallel for schedule(static) if (worth_threading(m, w))
  for (int64_t i = 0; i < m; ++i) {
    std::vector<int32_t> a_row(static_cast<size_t>(w.k_padded), 0);
    for (int64_t kk = 0; kk < w.k; ++kk) a_row[kk] = a[i * lda + kk];
    int32_t sums[kPanel];
    for (int64_t p = 0; p < w.panels(); ++p) {
      std::fill(sums, sums + kPanel, 0);
      const int8_t* bp = w.panel(p);
      for (int64_t q = 0; q < kq; ++q, bp += kPanel * kQuad) {
        const int32_t* aq = a_row.data() + q * kQuad;
        for (int64_t ch = 0; ch < kPanel; ++ch) {
          const int8_t* bc = bp + ch * kQuad;
          sums[ch] += aq[0] * bc[0] + aq[1] * bc[1] + aq[2] * bc[2] + aq[3] * bc[3];
        }
      }
      const int64_t col0 = p * kPanel;
      dequantize_row(sums, std::min(kPanel, w.n - col0), row_scales[i], col_scales + col0,
                     bias != nullptr ? bias + col0 : nullptr, c + i * ldc + col0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// oneDNN path: dnnl_gemm_s8s8s32 into an int32 scratch, then the same epilogue.

void gemm_int8_onednn(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt8Weights& w,
                      const float* col_scales, const float* bias, float* c, int64_t ldc) {
  if (w.row_major.empty()) fail("gemm_int8: the oneDNN path needs pack_int8_weights(..., keep_row_major=true)");
  static thread_local AlignedBuffer<int32_t> c_scratch;
  int32_t* c32 = c_scratch.reserve(static_cast<size_t>(m * w.n));
  const int32_t zero_offset = 0;
  const dnnl_status_t status = dnnl_gemm_s8s8s32('N', 'T', 'F', m, w.n, w.k, 1.0f, a, lda, 0, w.row_major.data(),
                                                 w.k, 0, 0.0f, c32, w.n, &zero_offset);
  if (status != dnnl_success) fail("gemm_int8: dnnl_gemm_s8s8s32 failed (status {})", static_cast<int>(status));
#pragma omp parallel for schedule(static) if (m * w.n >= (1 << 16))
  for (int64_t i = 0; i < m; ++i) dequantize_row(c32 + i * w.n, w.n, row_scales[i], col_scales, bias, c + i * ldc);
}

}  // namespace

PackedInt8Weights allocate_int8_weights(int64_t n, int64_t k) {
  if (n < 0 || k < 0) fail("pack_int8_weights: bad shape N={} K={}", n, k);
  if (k > kMaxK) fail("pack_int8_weights: K={} exceeds {} (int32 accumulators could overflow)", k, kMaxK);
  PackedInt8Weights w;
  w.n = n;
  w.k = k;
  w.k_padded = round_up(std::max<int64_t>(k, 1), kQuad);
  w.n_padded = round_up(std::max<int64_t>(n, 1), kPanel);
  w.data.resize(static_cast<size_t>(w.n_padded * w.k_padded));
  w.compensation.resize(static_cast<size_t>(w.n_padded));
  return w;
}

void pack_int8_panel(const int8_t* b, int64_t ldb, int64_t panel_index, PackedInt8Weights& w) {
  int8_t* panel = w.data.data() + panel_index * kPanel * w.k_padded;
  const int64_t rows = std::clamp<int64_t>(w.n - panel_index * kPanel, 0, kPanel);
  const int64_t quads = w.k_padded / kQuad;
  const int64_t full_quads = w.k / kQuad;
  for (int64_t ch = 0; ch < kPanel; ++ch) {
    const auto slot = [&](int64_t q) { return panel + (q * kPanel + ch) * kQuad; };
    int32_t row_sum = 0;
    if (ch < rows) {
      const int8_t* source = b + ch * ldb;
      for (int64_t kk = 0; kk < w.k; ++kk) row_sum += source[kk];
      // Whole k-quads move as one 4-byte word (dynamic CrossQuant re-packs every window).
      for (int64_t q = 0; q < full_quads; ++q) std::memcpy(slot(q), source + q * kQuad, kQuad);
      for (int64_t q = full_quads; q < quads; ++q)
        for (int64_t t = 0; t < kQuad; ++t) slot(q)[t] = q * kQuad + t < w.k ? source[q * kQuad + t] : int8_t{0};
    } else {
      for (int64_t q = 0; q < quads; ++q) std::memset(slot(q), 0, kQuad);
    }
    w.compensation[panel_index * kPanel + ch] = 128 * row_sum;
  }
}

PackedInt8Weights pack_int8_weights(const int8_t* b, int64_t n, int64_t k, int64_t ldb, bool keep_row_major) {
  if (ldb < k) fail("pack_int8_weights: bad shape N={} K={} ldb={}", n, k, ldb);
  PackedInt8Weights w = allocate_int8_weights(n, k);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < w.panels(); ++p) pack_int8_panel(b + p * kPanel * ldb, ldb, p, w);
  if (keep_row_major) {
    w.row_major.resize(static_cast<size_t>(n * k));
    for (int64_t row = 0; row < n; ++row) std::memcpy(w.row_major.data() + row * k, b + row * ldb, k);
  }
  return w;
}

GemmPath resolve_int8_gemm_path(int64_t /*m*/, const PackedInt8Weights& /*w*/, GemmPath requested) {
  if (requested == GemmPath::Auto) requested = gemm_path();
  if (requested != GemmPath::Auto) return requested;
  // bench_gemm (per core): the own VNNI kernels match or beat the oneDNN path
  // (dnnl_gemm_s8s8s32 + epilogue) up to 4× at M ≤ 512, and are within 0.94–1.0× of it at
  // M = 2048. oneDNN also needs the row-major weight copy (twice the memory), so it is never
  // the automatic choice; GemmPath::OneDnn keeps it available for comparisons.
  if (cpu_has_avx512_vnni()) return GemmPath::Avx512Vnni;
  if (cpu_has_avx2_fma()) return GemmPath::Avx2;
  return GemmPath::Scalar;
}

void gemm_int8(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const PackedInt8Weights& w,
               const float* col_scales, const float* bias, float* c, int64_t ldc, GemmPath path) {
  if (m < 0 || lda < w.k || ldc < w.n) fail("gemm_int8: bad shape M={} lda={} ldc={} (K={} N={})", m, lda, ldc, w.k, w.n);
  if (m == 0 || w.n == 0) return;
  const GemmPath resolved = resolve_int8_gemm_path(m, w, path);
  if (!gemm_path_supported(resolved)) fail("gemm_int8: path '{}' is not supported on this CPU", to_string(resolved));
  switch (resolved) {
    case GemmPath::Avx512Vnni: return gemm_int8_vnni(a, m, lda, row_scales, w, col_scales, bias, c, ldc);
    case GemmPath::Avx2: return gemm_int8_avx2(a, m, lda, row_scales, w, col_scales, bias, c, ldc);
    case GemmPath::OneDnn: return gemm_int8_onednn(a, m, lda, row_scales, w, col_scales, bias, c, ldc);
    case GemmPath::Scalar:
    case GemmPath::Auto: return gemm_int8_scalar(a, m, lda, row_scales, w, col_scales, bias, c, ldc);
  }
}

void gemm_int8_reference(const int8_t* a, int64_t m, int64_t lda, const float* row_scales, const int8_t* b,
                         int64_t n, int64_t k, int64_t ldb, const float* col_scales, const float* bias, float* c,
                         int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t sum = 0;
      for (int64_t kk = 0; kk < k; ++kk) sum += int32_t{a[i * lda + kk]} * int32_t{b[j * ldb + kk]};
      const float scale = row_scales[i] * col_scales[j];
      c[i * ldc + j] = std::fma(static_cast<float>(sum), scale, bias != nullptr ? bias[j] : 0.0f);
    }
  }
}

}  // namespace cq::kernels
