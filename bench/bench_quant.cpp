// Activation quantization cost of CrossQuant against per-token on one 2048 x 4096 matrix
// (a 2048-token window into a 4096-wide linear layer), in both forms the model uses:
// fake quantization in place and integer codes + scales. Methods are run interleaved, each
// repetition timing every method once on a fresh copy of the same input; the median over the
// repetitions is printed with its ratio to per-token's median of the same form.
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

#include "quant/crossquant.h"
#include "quant/quantizer.h"

namespace {

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

  for (int repetition = 0; repetition < repetitions + 1; ++repetition) {
    for (Case& benchmark_case : cases) {
      std::copy(input.begin(), input.end(), work.begin());
      const auto start = std::chrono::steady_clock::now();
      benchmark_case.run(cq::MatrixView{work.data(), rows, cols, cols});
      const auto stop = std::chrono::steady_clock::now();
      if (repetition > 0)  // the first round warms caches, pages and the thread pool
        benchmark_case.milliseconds.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }
  }

  std::printf("activation quantization, %lld x %lld float32, INT8, %d OpenMP threads, median of %d runs\n",
              static_cast<long long>(rows), static_cast<long long>(cols), omp_get_max_threads(), repetitions);
  std::printf("%-6s %-20s %10s %10s %12s\n", "form", "method", "median ms", "min ms", "vs per-token");
  for (const Case& benchmark_case : cases) {
    double baseline = 0.0;
    for (const Case& other : cases)
      if (other.form == benchmark_case.form && other.name == "per-token") baseline = median(other.milliseconds);
    if (benchmark_case.name.find("+stats") != std::string::npos) {
      for (const Case& other : cases)
        if (other.form == benchmark_case.form && other.name == "per-token +stats") baseline = median(other.milliseconds);
    }
    const double ms = median(benchmark_case.milliseconds);
    std::printf("%-6s %-20s %10.3f %10.3f %11.2fx\n", benchmark_case.form.c_str(), benchmark_case.name.c_str(), ms,
                *std::min_element(benchmark_case.milliseconds.begin(), benchmark_case.milliseconds.end()),
                ms / baseline);
  }
  return sink.elements > 0 ? 0 : 1;
}
