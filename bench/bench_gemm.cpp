// GEMM benchmark for linear-layer shapes: our INT8 GEMM vs our FP32 GEMM (oneDNN sgemm) vs
// oneDNN's INT8 GEMM, and at M = 1 (decode) INT4 g128 vs INT8 vs FP32 with the achieved
// weight bandwidth. All ratios come from the same run; each figure is the median of
// several timed runs after a warm-up.
//
//   bench_gemm [--quick] [--decode-only] [--reps N] [--cpu-time]
//
// --decode-only skips the M-rows tables (only the M = 1 weight-streaming rows and ceilings).
// --quick drops the (4096, 11008) shape and M = 2048. --cpu-time times with the process CPU
// clock instead of wall time: on a machine shared with other jobs, `OMP_NUM_THREADS=1
// bench_gemm --cpu-time` gives per-core figures that time slices given to other processes
// do not distort (with several threads, CPU time would count OpenMP barrier spinning). Decode (M = 1) rotates through enough
// weight copies to exceed the L3 cache, so weights stream from DRAM as in a real model.
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm_dispatch.h"
#include "kernels/gemm_f32.h"
#include "kernels/gemm_int4.h"
#include "kernels/gemm_int8.h"

namespace {

using namespace cq::kernels;

constexpr int64_t kColdFootprintBytes = int64_t{256} << 20;  // > 8× the 32 MiB L3

volatile int32_t g_peak_sink;  // keeps the bandwidth loop from being optimised away
bool g_use_cpu_time = false;

double seconds_now() {
  timespec now{};
  clock_gettime(g_use_cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// Ceilings measured in this run, on all threads, so the fractions below are honest when the
// machine is shared or clocks differ from the stated ones. The loops are written in assembly:
// compiled from intrinsics, GCC kept an accumulator array on the stack and shuffled registers
// every iteration, which read 873 GOP/s on a Zen 5 day where the GEMM itself ran 1,500. Sixteen
// independent accumulators cover the instruction's latency on two pipes (Zen 4 runs one 512-bit
// VNNI or FMA per cycle, Zen 5 two).
#define CQ_REPEAT16(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11) op(12) op(13) op(14) op(15)
#define CQ_ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n"
#define CQ_DPBUSD(i) "vpdpbusd %%zmm31, %%zmm30, %%zmm" #i "\n"
#define CQ_FMADD(i) "vfmadd231ps %%zmm31, %%zmm30, %%zmm" #i "\n"
#define CQ_CLOBBER16 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                     "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm30", "xmm31", "cc"

constexpr long kPeakIterations = 4'000'000;  // ~0.1 s at one instruction per cycle

// Best of several short runs: a time slice lost to another process lowers one run, not all.
double best_of_runs(const std::function<double()>& run) {
  double best = 0.0;
  for (int i = 0; i < 7; ++i) best = std::max(best, run());
  return best;
}

double measured_vnni_peak_gops() {
  const double start = seconds_now();
#pragma omp parallel
  {
    long remaining = kPeakIterations;
    asm volatile("vpternlogd $0xff, %%zmm31, %%zmm31, %%zmm31\n"
                 "vpabsb %%zmm31, %%zmm30\n" CQ_REPEAT16(CQ_ZERO) "1:\n" CQ_REPEAT16(CQ_DPBUSD) "dec %0\n"
                 "jnz 1b\n"
                 : "+r"(remaining)
                 :
                 : CQ_CLOBBER16);
  }
  const double elapsed = seconds_now() - start;
  return static_cast<double>(kPeakIterations) * 16 * 64 * 2.0 * omp_get_max_threads() / elapsed * 1e-9;
}

double measured_fma_peak_gflops() {
  const double start = seconds_now();
#pragma omp parallel
  {
    long remaining = kPeakIterations;
    // Multiplying by 1.0 and adding 0.0 keeps the accumulators finite (no denormal slow path).
    asm volatile("vpxord %%zmm31, %%zmm31, %%zmm31\n"
                 "vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\n"
                 "vpsrld $25, %%zmm30, %%zmm30\n"
                 "vpslld $23, %%zmm30, %%zmm30\n" CQ_REPEAT16(CQ_ZERO) "1:\n" CQ_REPEAT16(CQ_FMADD) "dec %0\n"
                 "jnz 1b\n"
                 : "+r"(remaining)
                 :
                 : CQ_CLOBBER16);
  }
  const double elapsed = seconds_now() - start;
  return static_cast<double>(kPeakIterations) * 16 * 16 * 2.0 * omp_get_max_threads() / elapsed * 1e-9;
}

// A plain read loop over a buffer 8x the L3, every thread reading its own slice: the memory
// bandwidth that GEMV's weight stream is judged against (best of three passes).
double measured_read_bandwidth_gbs() {
  const size_t count = static_cast<size_t>(kColdFootprintBytes) / sizeof(int64_t);
  std::vector<int64_t> buffer(count, 1);
  double best = 0.0;
  for (int pass = 0; pass < 4; ++pass) {
    int64_t total = 0;
    const double start = seconds_now();
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (size_t i = 0; i < count; ++i) total += buffer[i];
    const double elapsed = seconds_now() - start;
    g_peak_sink = static_cast<int32_t>(total);
    if (pass > 0) best = std::max(best, static_cast<double>(kColdFootprintBytes) / elapsed * 1e-9);
  }
  return best;
}

// oneDNN's matmul primitive, s8 × s8 → s32, with the weights reordered once into its preferred
// (packed) layout — oneDNN's strongest INT8 path; no dequantization epilogue (a lower bound).
class OneDnnInt8Matmul {
 public:
  OneDnnInt8Matmul(int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b_rows_n, int32_t* c) {
    using dnnl::memory;
    const memory::desc a_desc({m, k}, memory::data_type::s8, memory::format_tag::ab);
    const memory::desc b_any({k, n}, memory::data_type::s8, memory::format_tag::any);
    const memory::desc c_desc({m, n}, memory::data_type::s32, memory::format_tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_desc, b_any, c_desc), engine_);
    // B is N×K row-major, i.e. the K×N operand in "ba" order.
    memory b_user({{k, n}, memory::data_type::s8, memory::format_tag::ba}, engine_, const_cast<int8_t*>(b_rows_n));
    weights_ = memory(pd.weights_desc(), engine_);
    dnnl::reorder(b_user, weights_).execute(stream_, b_user, weights_);
    stream_.wait();
    src_ = memory(a_desc, engine_, const_cast<int8_t*>(a));
    dst_ = memory(c_desc, engine_, c);
    matmul_ = dnnl::matmul(pd);
  }
  void run() {
    matmul_.execute(stream_, {{DNNL_ARG_SRC, src_}, {DNNL_ARG_WEIGHTS, weights_}, {DNNL_ARG_DST, dst_}});
    stream_.wait();
  }

 private:
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  dnnl::memory src_, weights_, dst_;
  dnnl::matmul matmul_;
};

// Median seconds per call of `call(copy)`; each timed sample runs every copy once.
double median_seconds(int reps, int copies, const std::function<void(int)>& call) {
  for (int c = 0; c < copies; ++c) call(c);  // warm-up (page faults, scratch buffers, JIT)
  std::vector<double> samples;
  for (int r = 0; r < reps; ++r) {
    const double start = seconds_now();
    for (int c = 0; c < copies; ++c) call(c);
    samples.push_back((seconds_now() - start) / copies);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

template <typename T>
std::vector<T> random_vector(size_t count, double lo, double hi, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> out(count);
  for (auto& x : out) x = static_cast<T>(dist(rng));
  return out;
}

int copies_for(int64_t bytes) { return static_cast<int>(std::max<int64_t>(1, kColdFootprintBytes / std::max<int64_t>(bytes, 1))); }

struct Weights {
  std::vector<float> f32;                // N×K
  std::vector<int8_t> i8;                // N×K codes
  std::vector<int8_t> i4_codes;          // N×K codes in [-8, 7]
  std::vector<float> col_scales, bias, group_scales;
};

// This run's ceilings; every kernel below is reported as a fraction of them.
struct Ceilings {
  double vnni_gops = 0.0;   // INT8 multiply-adds (vpdpbusd zmm), all threads
  double fma_gflops = 0.0;  // FP32 FMA (vfmadd231ps zmm), all threads
  double read_gbs = 0.0;    // plain read loop from DRAM, all threads
};

void bench_shape(int64_t k, int64_t n, const std::vector<int64_t>& ms, int reps, const Ceilings& peak, std::mt19937& rng,
                 bool decode_only) {
  Weights w;
  w.f32 = random_vector<float>(static_cast<size_t>(n * k), -0.05, 0.05, rng);
  w.i8 = random_vector<int8_t>(static_cast<size_t>(n * k), -127.4, 127.4, rng);
  w.i4_codes = random_vector<int8_t>(static_cast<size_t>(n * k), -8.0, 7.99, rng);
  w.col_scales = random_vector<float>(static_cast<size_t>(n), 1e-3, 1e-2, rng);
  w.bias = random_vector<float>(static_cast<size_t>(n), -0.1, 0.1, rng);
  const int64_t groups = (k + 127) / 128;
  w.group_scales = random_vector<float>(static_cast<size_t>(n * groups), 1e-3, 1e-2, rng);
  const PackedInt8Weights packed8 = pack_int8_weights(w.i8.data(), n, k, k, /*keep_row_major=*/true);

  std::printf("\n== K=%lld N=%lld (INT8 path: %s)\n", static_cast<long long>(k), static_cast<long long>(n),
              to_string(resolve_int8_gemm_path(1, packed8)));
  if (!decode_only) std::printf("%6s | %9s %6s %6s | %9s %7s %6s | %9s %9s %9s %6s %6s | %7s %7s\n", "M", "int8 ms", "GOP/s", "%vnni",
              "fp32 ms", "GFLOP/s", "%fma", "dnnl-s8", "dnnl-u8", "dnnl-mm", "GOP/s", "%vnni", "x fp32", "x dnnl");
  const int64_t max_m = *std::max_element(ms.begin(), ms.end());
  const auto a_f32 = random_vector<float>(static_cast<size_t>(max_m * k), -1.0, 1.0, rng);
  const auto a_i8 = random_vector<int8_t>(static_cast<size_t>(max_m * k), -127.4, 127.4, rng);
  std::vector<uint8_t> a_u8(a_i8.size());
  for (size_t i = 0; i < a_i8.size(); ++i) a_u8[i] = static_cast<uint8_t>(a_i8[i] + 128);
  const auto row_scales = random_vector<float>(static_cast<size_t>(max_m), 1e-3, 1e-2, rng);
  std::vector<float> c(static_cast<size_t>(max_m * n));
  std::vector<int32_t> c32(static_cast<size_t>(max_m * n));

  for (int64_t m : decode_only ? std::vector<int64_t>{} : ms) {
    const double ops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    const int samples = m >= 512 ? reps : 2 * reps + 1;
    const double t_int8 = median_seconds(samples, 1, [&](int) {
      gemm_int8(a_i8.data(), m, k, row_scales.data(), packed8, w.col_scales.data(), w.bias.data(), c.data(), n);
    });
    const double t_f32 = median_seconds(samples, 1, [&](int) {
      gemm_f32(a_f32.data(), k, w.f32.data(), k, w.bias.data(), c.data(), n, m, n, k);
    });
    const double t_dnnl_s8 = median_seconds(samples, 1, [&](int) {
      gemm_int8(a_i8.data(), m, k, row_scales.data(), packed8, w.col_scales.data(), w.bias.data(), c.data(), n,
                GemmPath::OneDnn);
    });
    // oneDNN's u8·s8 GEMM with its own A offset (no dequantization epilogue: a lower bound).
    const int32_t zero = 0;
    const double t_dnnl_u8 = median_seconds(samples, 1, [&](int) {
      dnnl_gemm_u8s8s32('N', 'T', 'F', m, n, k, 1.0f, a_u8.data(), k, 128, w.i8.data(), k, 0, 0.0f, c32.data(), n,
                        &zero);
    });
    OneDnnInt8Matmul dnnl_matmul(m, n, k, a_i8.data(), w.i8.data(), c32.data());
    const double t_dnnl_mm = median_seconds(samples, 1, [&](int) { dnnl_matmul.run(); });
    const double best_dnnl = std::min({t_dnnl_s8, t_dnnl_u8, t_dnnl_mm});
    const double int8_gops = ops / t_int8 * 1e-9;
    const double f32_gflops = ops / t_f32 * 1e-9;
    const double dnnl_gops = ops / best_dnnl * 1e-9;
    std::printf("%6lld | %9.3f %6.0f %5.1f%% | %9.3f %7.0f %5.1f%% | %9.3f %9.3f %9.3f %6.0f %5.1f%% | %6.2fx %6.2fx\n",
                static_cast<long long>(m), t_int8 * 1e3, int8_gops, 100.0 * int8_gops / peak.vnni_gops, t_f32 * 1e3,
                f32_gflops, 100.0 * f32_gflops / peak.fma_gflops, t_dnnl_s8 * 1e3, t_dnnl_u8 * 1e3,
                t_dnnl_mm * 1e3, dnnl_gops, 100.0 * dnnl_gops / peak.vnni_gops, t_f32 / t_int8, best_dnnl / t_int8);
    std::fflush(stdout);
  }

  // Decode: weights from DRAM (rotate through copies larger than L3 in total).
  const int64_t bytes_f32 = n * k * 4;
  const int64_t bytes_i8 = static_cast<int64_t>(packed8.data.size() + packed8.compensation.size() * 4);
  std::vector<PackedInt8Weights> i8_copies;
  for (int i = 0; i < copies_for(bytes_i8); ++i) i8_copies.push_back(pack_int8_weights(w.i8.data(), n, k, k));
  std::vector<PackedInt4Weights> i4_copies, i4z_copies;
  std::vector<int8_t> unsigned_codes(w.i4_codes.size());
  for (size_t i = 0; i < unsigned_codes.size(); ++i) unsigned_codes[i] = static_cast<int8_t>(w.i4_codes[i] + 8);
  const std::vector<int8_t> zero_points = random_vector<int8_t>(static_cast<size_t>(n * groups), 0.0, 15.99, rng);
  PackedInt4Weights probe = pack_int4_weights(w.i4_codes.data(), n, k, k, w.group_scales.data(), 128);
  const int64_t bytes_i4 = probe.bytes();
  for (int i = 0; i < copies_for(bytes_i4); ++i) {
    i4_copies.push_back(pack_int4_weights(w.i4_codes.data(), n, k, k, w.group_scales.data(), 128));
    i4z_copies.push_back(
        pack_int4_weights(unsigned_codes.data(), n, k, k, w.group_scales.data(), 128, zero_points.data()));
  }
  std::vector<std::vector<float>> f32_copies(static_cast<size_t>(copies_for(bytes_f32)), w.f32);
  const int samples = 4 * reps + 1;
  const double t_f32 = median_seconds(samples, static_cast<int>(f32_copies.size()), [&](int i) {
    gemm_f32(a_f32.data(), k, f32_copies[i].data(), k, w.bias.data(), c.data(), n, 1, n, k);
  });
  const double t_i8 = median_seconds(samples, static_cast<int>(i8_copies.size()), [&](int i) {
    gemm_int8(a_i8.data(), 1, k, row_scales.data(), i8_copies[i], w.col_scales.data(), w.bias.data(), c.data(), n);
  });
  const double t_i4 = median_seconds(samples, static_cast<int>(i4_copies.size()), [&](int i) {
    gemm_int4(a_i8.data(), 1, k, row_scales.data(), i4_copies[i], w.bias.data(), c.data(), n);
  });
  const double t_i4z = median_seconds(samples, static_cast<int>(i4z_copies.size()), [&](int i) {
    gemm_int4(a_i8.data(), 1, k, row_scales.data(), i4z_copies[i], w.bias.data(), c.data(), n);
  });
  std::printf("  decode M=1 (weights from DRAM)   %10s %10s %9s %8s\n", "ms", "GB/s", "%read", "x fp32");
  const auto row = [&](const char* name, double t, int64_t bytes) {
    std::printf("  %-32s %10.4f %10.1f %8.1f%% %7.2fx\n", name, t * 1e3, static_cast<double>(bytes) / t * 1e-9,
                100.0 * static_cast<double>(bytes) / t * 1e-9 / peak.read_gbs, t_f32 / t);
  };
  row("fp32 (gemm_f32: own GEMV)", t_f32, bytes_f32);
  row("int8 per-channel", t_i8, bytes_i8);
  row("int4 g128 symmetric", t_i4, bytes_i4);
  row("int4 g128 zero points", t_i4z, i4z_copies[0].bytes());
  std::printf("  int4 g128 vs int8: %.2fx faster\n", t_i8 / t_i4);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool decode_only = false;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--decode-only") == 0) {
      decode_only = true;
    } else if (std::strcmp(argv[i], "--cpu-time") == 0) {
      g_use_cpu_time = true;
    } else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--decode-only] [--reps N] [--cpu-time]\n", argv[0]);
      return 2;
    }
  }
  if (!cq::kernels::cpu_has_avx512_vnni()) {
    std::fprintf(stderr, "bench_gemm: this CPU lacks AVX-512 VNNI; the INT8 kernels it measures need it\n");
    return 1;
  }
  Ceilings peak;
  peak.vnni_gops = best_of_runs(measured_vnni_peak_gops);
  peak.fma_gflops = best_of_runs(measured_fma_peak_gflops);
  peak.read_gbs = measured_read_bandwidth_gbs();
  std::printf("bench_gemm: %d OpenMP threads, %s clock, median of %d+ runs\n", omp_get_max_threads(),
              g_use_cpu_time ? "process CPU" : "wall", reps);
  std::printf("ceilings measured now: INT8 VNNI %.0f GOP/s, FP32 FMA %.0f GFLOP/s, DRAM read %.1f GB/s\n",
              peak.vnni_gops, peak.fma_gflops, peak.read_gbs);
  std::printf("columns: int8 = ours (gemm_int8, fused epilogue); %%vnni, %%fma, %%read = fraction of the ceiling "
              "measured now; fp32 = gemm_f32 (dnnl_sgemm + bias; M <= 4: own GEMV); dnnl-s8 = dnnl_gemm_s8s8s32 + our epilogue, "
              "dnnl-u8 = dnnl_gemm_u8s8s32 alone, dnnl-mm = oneDNN matmul s8s8s32 with pre-packed weights alone "
              "(ms; GOP/s of the fastest); x fp32 / x dnnl = speed-up of ours over fp32 / the fastest oneDNN. "
              "The M-rows table reuses one weight copy (warm caches)\n");
  std::mt19937 rng(42);
  std::vector<std::pair<int64_t, int64_t>> shapes = {{768, 3072}, {4096, 4096}, {4096, 11008}};
  std::vector<int64_t> ms = {1, 16, 512, 2048};
  if (quick) {
    shapes.pop_back();
    ms.pop_back();
  }
  for (const auto& [k, n] : shapes) bench_shape(k, n, ms, reps, peak, rng, decode_only);
  return 0;
}
