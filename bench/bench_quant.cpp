// Activation quantization cost of CrossQuant against per-token on one 2048 x 4096 matrix
// (a 2048-token window into a 4096-wide linear layer), in both forms the model uses:
// fake quantization in place and integer codes + scales. Methods are run interleaved, each
// repetition timing every method once on a fresh copy of the same input; the median over the
// repetitions is printed with its ratio to per-token's median of the same form.
//
// The second table is the quantizer as the model runs it: after the kernel that writes the
// activations (here a LayerNorm, as before q/k/v or fc1). Dynamic CrossQuant there takes its
// column maxima c_j from that kernel (kernels::produce_rows) instead of a pass of its own.
// Its cost is the time of "norm, then quantize" minus the norm alone, so the gathering the
// norm does for CrossQuant counts against CrossQuant.
//   bench_quant [repetitions=21] [rows=2048] [cols=4096]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/column_absmax.h"
#include "kernels/kernel_dispatch.h"
#include "kernels/normalization.h"
#include "quant/crossquant.h"
#include "quant/quantizer.h"

namespace {

std::vector<float> normal_values(int64_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& value : values) value = normal(generator);
  return values;
}

// Gaussian activations with a few outlier channels 20-100x larger, as in LLM layers.
std::vector<float> activations_with_outliers(int64_t rows, int64_t cols) {
  std::mt19937 generator(42);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (float& value : x) value = normal(generator);
  std::uniform_int_distribution<int64_t> column(0, cols - 1);
  std::uniform_real_distribution<float> gain(20.f, 100.f);
  for (int outlier = 0; outlier < 8; ++outlier) {
    const int64_t j = column(generator);
    const float factor = gain(generator);
    for (int64_t i = 0; i < rows; ++i) x[static_cast<size_t>(i * cols + j)] *= factor;
  }
  return x;
}

struct Case {
  std::string name;
  std::string form;  // "fake" or "codes": ratios are against per-token of the same form
  std::function<void(cq::MatrixView)> run;
  std::vector<double> milliseconds;
};

// A quantizer run right after the producer wrote its input; the two parts are timed apart.
struct AfterProducerCase {
  std::string name;
  std::string form;
  bool gather = false;  // the producer gathers c_j
  std::function<void(cq::MatrixView)> quantize;
  std::vector<double> producer_milliseconds, quantize_milliseconds;
};

double elapsed_ms(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point stop) {
  return std::chrono::duration<double, std::milli>(stop - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int repetitions = argc > 1 ? std::atoi(argv[1]) : 21;
  const int64_t rows = argc > 2 ? std::atoll(argv[2]) : 2048;
  const int64_t cols = argc > 3 ? std::atoll(argv[3]) : 4096;
  const std::vector<float> input = activations_with_outliers(rows, cols);
  std::vector<float> work(input.size());

  cq::QuantizerSpec per_token_spec;
  per_token_spec.method = "per-token";
  per_token_spec.bits = 8;
  cq::QuantizerSpec crossquant_spec = per_token_spec;
  crossquant_spec.method = "crossquant";
  crossquant_spec.alpha = 0.15;
  const auto per_token = cq::make_quantizer(per_token_spec);
  const auto crossquant = cq::make_quantizer(crossquant_spec);
  cq::CrossQuantQuantizer static_crossquant(crossquant_spec);
  std::vector<float> calibrated_column_absmax;
  cq::CrossQuantQuantizer::accumulate_column_absmax(
      cq::MatrixView{const_cast<float*>(input.data()), rows, cols, cols}, calibrated_column_absmax);
  static_crossquant.set_static_column_absmax(calibrated_column_absmax);

  cq::KernelStats sink;  // keeps the statistics variants honest
  std::vector<Case> cases;
  cases.push_back({"per-token", "fake", [&](cq::MatrixView x) { per_token->fake_quantize(x, nullptr); }, {}});
  cases.push_back({"crossquant a=0.15", "fake", [&](cq::MatrixView x) { crossquant->fake_quantize(x, nullptr); }, {}});
  cases.push_back({"crossquant static", "fake", [&](cq::MatrixView x) { static_crossquant.fake_quantize(x, nullptr); }, {}});
  cases.push_back({"per-token +stats", "fake", [&](cq::MatrixView x) { per_token->fake_quantize(x, &sink); }, {}});
  cases.push_back({"crossquant +stats", "fake", [&](cq::MatrixView x) { crossquant->fake_quantize(x, &sink); }, {}});
  cases.push_back({"per-token", "codes", [&](cq::MatrixView x) { (void)per_token->quantize(x, nullptr); }, {}});
  cases.push_back({"crossquant a=0.15", "codes", [&](cq::MatrixView x) { (void)crossquant->quantize(x, nullptr); }, {}});
  cases.push_back({"crossquant static", "codes", [&](cq::MatrixView x) { (void)static_crossquant.quantize(x, nullptr); }, {}});

  // The producer: LayerNorm of a residual stream, its weight carrying the outlier channels.
  const std::vector<float> residual = normal_values(rows * cols, 7);
  std::vector<float> norm_weight(static_cast<size_t>(cols), 1.f), norm_bias(static_cast<size_t>(cols), 0.f);
  for (int64_t j = 0; j < cols; j += std::max<int64_t>(1, cols / 8))
    norm_weight[static_cast<size_t>(j)] = 20.f + static_cast<float>(j % 80);
  const int64_t whole[] = {0, rows};
  std::vector<float> gathered(static_cast<size_t>(cols));
  auto norm = [&](cq::MatrixView y, bool gather) {
    cq::kernels::produce_row_groups(rows, cols, true, whole, gather ? gathered.data() : nullptr,
                                    [&](int64_t begin, int64_t end, float* gather_into) {
                                      cq::kernels::layer_norm_rows(residual.data() + begin * cols, y.row(begin),
                                                                   end - begin, cols, norm_weight.data(),
                                                                   norm_bias.data(), 1e-5, gather_into);
                                    });
  };
  const auto& dynamic_crossquant = dynamic_cast<const cq::CrossQuantQuantizer&>(*crossquant);
  cq::CrossQuantQuantizer static_after_norm(crossquant_spec);  // calibrated on the norm's output
  norm(cq::MatrixView{work.data(), rows, cols, cols}, true);
  static_after_norm.set_static_column_absmax(gathered);
  std::vector<AfterProducerCase> after_norm;
  after_norm.push_back({"per-token", "fake", false, [&](cq::MatrixView y) { per_token->fake_quantize(y, nullptr); }, {}, {}});
  after_norm.push_back({"crossquant two-pass", "fake", false, [&](cq::MatrixView y) { crossquant->fake_quantize(y, nullptr); }, {}, {}});
  after_norm.push_back({"crossquant c gathered", "fake", true, [&](cq::MatrixView y) {
                          dynamic_crossquant.fake_quantize_with_column_absmax(y, gathered, nullptr);
                        }, {}, {}});
  after_norm.push_back({"crossquant static", "fake", false, [&](cq::MatrixView y) { static_after_norm.fake_quantize(y, nullptr); }, {}, {}});
  after_norm.push_back({"per-token", "codes", false, [&](cq::MatrixView y) { (void)per_token->quantize(y, nullptr); }, {}, {}});
  after_norm.push_back({"crossquant two-pass", "codes", false, [&](cq::MatrixView y) { (void)crossquant->quantize(y, nullptr); }, {}, {}});
  after_norm.push_back({"crossquant c gathered", "codes", true, [&](cq::MatrixView y) {
                          (void)dynamic_crossquant.quantize_with_column_absmax(y, gathered, nullptr);
                        }, {}, {}});
  after_norm.push_back({"crossquant static", "codes", false, [&](cq::MatrixView y) { (void)static_after_norm.quantize(y, nullptr); }, {}, {}});

  for (int repetition = 0; repetition < repetitions + 1; ++repetition) {
    // The first round warms caches, pages and the thread pool.
    for (Case& benchmark_case : cases) {
      std::copy(input.begin(), input.end(), work.begin());
      const auto start = std::chrono::steady_clock::now();
      benchmark_case.run(cq::MatrixView{work.data(), rows, cols, cols});
      const auto stop = std::chrono::steady_clock::now();
      if (repetition > 0) benchmark_case.milliseconds.push_back(elapsed_ms(start, stop));
    }
    for (AfterProducerCase& benchmark_case : after_norm) {
      std::copy(input.begin(), input.end(), work.begin());  // the same cache state as above
      const cq::MatrixView y{work.data(), rows, cols, cols};
      const auto start = std::chrono::steady_clock::now();
      norm(y, benchmark_case.gather);
      const auto middle = std::chrono::steady_clock::now();
      benchmark_case.quantize(y);
      const auto stop = std::chrono::steady_clock::now();
      if (repetition > 0) {
        benchmark_case.producer_milliseconds.push_back(elapsed_ms(start, middle));
        benchmark_case.quantize_milliseconds.push_back(elapsed_ms(middle, stop));
      }
    }
  }

  std::printf("activation quantization, %lld x %lld float32, INT8, %d OpenMP threads, median of %d runs\n",
              static_cast<long long>(rows), static_cast<long long>(cols), omp_get_max_threads(), repetitions);
  // Which versions ran (docs/KERNELS.md): a portable build must say avx512 on an AVX-512 CPU.
  std::printf("row and vector kernels: %s\n", cq::kernels::active_kernel_isa());
  std::printf("%-6s %-22s %10s %10s %12s\n", "form", "method", "median ms", "min ms", "vs per-token");
  for (const Case& benchmark_case : cases) {
    const std::string baseline_name = benchmark_case.name.ends_with("+stats") ? "per-token +stats" : "per-token";
    double baseline = 0.0;
    for (const Case& other : cases)
      if (other.form == benchmark_case.form && other.name == baseline_name) baseline = median(other.milliseconds);
    const double ms = median(benchmark_case.milliseconds);
    std::printf("%-6s %-22s %10.3f %10.3f %11.2fx\n", benchmark_case.form.c_str(), benchmark_case.name.c_str(), ms,
                *std::min_element(benchmark_case.milliseconds.begin(), benchmark_case.milliseconds.end()),
                ms / baseline);
  }

  // After the norm. The norm's extra time for gathering c_j is charged to CrossQuant: the
  // difference of the medians over every run of the norm with and without gathering.
  std::vector<double> plain_norm, gathering_norm;
  for (const AfterProducerCase& benchmark_case : after_norm) {
    std::vector<double>& into = benchmark_case.gather ? gathering_norm : plain_norm;
    into.insert(into.end(), benchmark_case.producer_milliseconds.begin(), benchmark_case.producer_milliseconds.end());
  }
  const double gathering_ms = median(gathering_norm) - median(plain_norm);
  std::printf("\nafter a LayerNorm that writes the input: norm %.3f ms, norm gathering c %.3f ms (+%.3f ms)\n",
              median(plain_norm), median(gathering_norm), gathering_ms);
  std::printf("%-6s %-22s %10s %10s %10s %12s\n", "form", "method", "quantize", "gather c", "cost ms", "vs per-token");
  for (const AfterProducerCase& benchmark_case : after_norm) {
    double baseline = 0.0;
    for (const AfterProducerCase& other : after_norm)
      if (other.form == benchmark_case.form && other.name == "per-token") baseline = median(other.quantize_milliseconds);
    const double quantize_ms = median(benchmark_case.quantize_milliseconds);
    const double gather_ms = benchmark_case.gather ? gathering_ms : 0.0;
    std::printf("%-6s %-22s %10.3f %10.3f %10.3f %11.2fx\n", benchmark_case.form.c_str(), benchmark_case.name.c_str(),
                quantize_ms, gather_ms, quantize_ms + gather_ms, (quantize_ms + gather_ms) / baseline);
  }
  return sink.elements > 0 ? 0 : 1;
}
