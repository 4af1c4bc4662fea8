// OmniQuant calibration speed: forward + backward of one OPT-125m-shaped block (hidden 768,
// 12 heads, ffn 3072) at W4A4 with LWC and LET (ptq/omniquant_block.h), as a fraction of the
// FP32 GEMM throughput measured in the same run on the block's largest product
// (seqlen x 3072 x 768, kernels/gemm_f32). Figures are medians of timed runs after a warm-up;
// on a shared machine, compare the fraction, not the GFLOP/s.
//
//   bench_omniquant_block [--seqlen 512] [--reps 5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernels/gemm_f32.h"
#include "ptq/omniquant_block.h"

namespace {

using cq::OmniBlockParameters;
using cq::OmniBlockWeights;

double median_seconds(const std::function<void()>& run, int reps) {
  run();  // warm-up
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<float> random_values(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t seqlen = 512;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seqlen") && i + 1 < argc) seqlen = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_omniquant_block [--seqlen 512] [--reps 5]\n");
      return 2;
    }
  }
  if (seqlen < 1 || reps < 1) {
    std::fprintf(stderr, "bench_omniquant_block: --seqlen and --reps must be positive\n");
    return 2;
  }
  const int64_t H = 768, heads = 12, F = 3072, L = seqlen;
  std::mt19937 rng(7);
  OmniBlockWeights block;
  block.llama = false;
  block.hidden = H, block.heads = heads, block.kv_heads = heads, block.head_dim = H / heads, block.ffn = F;
  block.norm1_weight.assign(static_cast<size_t>(H), 1.f), block.norm1_bias.assign(static_cast<size_t>(H), 0.f);
  block.norm2_weight = block.norm1_weight, block.norm2_bias = block.norm1_bias;
  const int64_t shapes[cq::kOmniLinears][2] = {{H, H}, {H, H}, {H, H}, {H, H}, {F, H}, {0, 0}, {H, F}};
  for (int i = 0; i < cq::kOmniLinears; ++i) {
    auto& linear = block.linears[static_cast<size_t>(i)];
    linear.out = shapes[i][0], linear.in = shapes[i][1];
    if (linear.out == 0) continue;
    linear.weight = random_values(static_cast<size_t>(linear.out * linear.in), rng, 0.02f);
    linear.bias = random_values(static_cast<size_t>(linear.out), rng, 0.01f);
  }
  cq::OmniQuantSettings settings;  // W4A4, LWC, LET with shifts: the most work per step
  OmniBlockParameters p;
  for (auto* v : {&p.qkv_scale, &p.out_scale, &p.fc1_scale, &p.qkt_scale}) v->assign(static_cast<size_t>(H), 1.f);
  for (auto* v : {&p.qkv_shift, &p.out_shift, &p.fc1_shift}) v->assign(static_cast<size_t>(H), 0.f);
  for (int i = 0; i < cq::kOmniLinears; ++i)
    if (shapes[i][0] > 0) {
      p.upbound[static_cast<size_t>(i)].assign(static_cast<size_t>(shapes[i][0]), 4.f);
      p.lowbound[static_cast<size_t>(i)].assign(static_cast<size_t>(shapes[i][0]), 4.f);
    }
  OmniBlockParameters g = cq::omni_zero_like(p);
  const auto x = random_values(static_cast<size_t>(L * H), rng, 1.f);
  const auto target = random_values(static_cast<size_t>(L * H), rng, 1.f);
  auto workspace = cq::make_omni_workspace();

  // FP32 GEMM baseline: the block's largest product (fc1), same threads, same run.
  const auto a = random_values(static_cast<size_t>(L * H), rng, 1.f);
  std::vector<float> c(static_cast<size_t>(L * F));
  const double gemm_seconds = median_seconds([&] { cq::kernels::gemm_f32(a.data(), block.linears[4].weight.data(), nullptr, c.data(), L, F, H); }, reps);
  const double gemm_flops = 2.0 * static_cast<double>(L * F * H);

  const double step_seconds = median_seconds(
      [&] { cq::omni_block_run(block, p, settings, true, x.data(), L, target.data(), nullptr, &g, *workspace); }, reps);
  const double forward_seconds =
      median_seconds([&] { cq::omni_block_run(block, p, settings, true, x.data(), L, target.data(), nullptr, nullptr, *workspace); }, reps);
  // Products of one step: linears forward (x·Wᵀ), backward (dX and dW): 3 × 2·L·(4H² + 2HF);
  // attention per head forward Q·Kᵀ and P·V, backward dP, dV, dQ, dK: 6 × 2·L²·d (full
  // L × L products: the causal half is computed and masked).
  const double linear_flops = 2.0 * static_cast<double>(L) * static_cast<double>(4 * H * H + 2 * H * F);
  const double attention_flops = 2.0 * static_cast<double>(L * L) * static_cast<double>(H);
  const double step_flops = 3 * linear_flops + 6 * attention_flops;
  const double forward_flops = linear_flops + 2 * attention_flops;
  const double gemm_rate = gemm_flops / gemm_seconds;
  std::printf("OPT-125m-shaped block, seqlen %lld, W4A4 LWC + LET, median of %d\n", static_cast<long long>(L), reps);
  std::printf("FP32 GEMM %lldx%lldx%lld: %.1f GFLOP/s (baseline, this run)\n", static_cast<long long>(L),
              static_cast<long long>(F), static_cast<long long>(H), gemm_rate / 1e9);
  std::printf("forward:            %8.2f ms  %.1f GFLOP/s  %.0f %% of the GEMM rate\n", forward_seconds * 1e3,
              forward_flops / forward_seconds / 1e9, 100 * forward_flops / forward_seconds / gemm_rate);
  std::printf("forward + backward: %8.2f ms  %.1f GFLOP/s  %.0f %% of the GEMM rate\n", step_seconds * 1e3,
              step_flops / step_seconds / 1e9, 100 * step_flops / step_seconds / gemm_rate);
  return 0;
}
