// End-to-end model benchmarks, printed as ratios against a baseline measured in the same run:
//   1. `cq ppl` throughput (tokens/s) on a generated OPT-125m-shaped model vs the same
//      computation in the plain-PyTorch reference (bench/torch_ppl_throughput.py), same threads;
//   2. peak resident memory of loading and running a BF16 checkpoint of two LLaMA-2-7B
//      layers, relative to the file size.
// Usage: bench_model [--windows N] [--skip-torch] [--skip-memory]
#include <omp.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/agreement.h"
#include "eval/perplexity.h"
#include "model/synthetic.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/resolve_config.h"
#include "quant/quant_config.h"

namespace {

std::filesystem::path model_dir(const std::string& preset) {
  const auto dir = std::filesystem::path("build/bench-models") / preset;
  if (!std::filesystem::exists(dir / "config.json")) {
    fmt::print(stderr, "generating {} in {}\n", preset, dir.string());
    cq::write_synthetic_model(preset, dir);
  }
  return dir;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::string run_command(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return output;
  char buffer[4096];
  size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, read);
  ::pclose(pipe);
  return output;
}

void bench_ppl_throughput(int64_t windows, bool with_torch) {
  const auto dir = model_dir("opt-125m-shape");
  cq::Transformer model(dir);
  const int64_t seqlen = 512;
  const auto tokens = cq::random_tokens(model.config().vocab_size, windows * seqlen, 7);
  cq::PerplexityOptions options;
  options.seqlen = seqlen;
  options.show_progress = false;
  std::vector<double> rates;
  double ppl = 0;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto result = cq::evaluate_perplexity(model, tokens, options);
    rates.push_back(static_cast<double>(windows * seqlen) / result.seconds);
    ppl = result.perplexity;
  }
  const double ours = median(rates);
  fmt::print("ppl throughput, OPT-125m shape, seqlen 512, {} windows: crossquant {:.0f} tokens/s (ppl {:.3f})\n", windows, ours, ppl);
  std::fflush(stdout);
  {  // The whole W8A8 fake-quant run (CrossQuant α = 0.15 activations) against FP32.
    cq::Transformer quantized(dir);
    cq::QuantRequest request;  // `--scheme w8a8`: CrossQuant α = 0.15 activations by default
    request.scheme = "w8a8";
    request.given = {"--scheme"};
    const cq::QuantConfig config = cq::resolve_quant_config(request);
    cq::apply_quantization(quantized, config);
    std::vector<double> quant_rates;
    for (int repeat = 0; repeat < 3; ++repeat) {
      const auto result = cq::evaluate_perplexity(quantized, tokens, options);
      quant_rates.push_back(static_cast<double>(windows * seqlen) / result.seconds);
    }
    const double quant = median(quant_rates);
    fmt::print("W8A8 CrossQuant fake-quant run: {:.0f} tokens/s; time relative to FP32 = {:.2f}x (target <= 1.25x)\n", quant,
               ours / quant);
    std::fflush(stdout);
  }
  if (!with_torch) return;
  const std::string output = run_command(fmt::format(
      "/usr/bin/python3 bench/torch_ppl_throughput.py {} --seqlen 512 --windows {} --threads {} --repeats 3 2>/dev/null",
      dir.string(), windows, omp_get_max_threads()));
  try {
    const auto json = nlohmann::json::parse(output.substr(output.find('{')));
    const double theirs = json.at("tokens_per_s").get<double>();
    fmt::print("ppl throughput, PyTorch reference ({} threads, as cq): {:.0f} tokens/s (ppl {:.3f}); ratio crossquant / PyTorch = {:.2f}x\n",
               omp_get_max_threads(), theirs, json.value("ppl", 0.0), ours / theirs);
  } catch (const std::exception& e) {
    fmt::print("PyTorch reference unavailable ({}): {}\n", e.what(), output.substr(0, 200));
  }
}

// Loads and runs the BF16 model; the parent measures this process's peak RSS.
void memory_child(const std::filesystem::path& dir) {
  cq::Transformer model(dir);
  const auto tokens = cq::random_tokens(model.config().vocab_size, 64, 3);
  std::vector<float> logits(static_cast<size_t>(64 * model.config().vocab_size));
  model.forward(tokens, 1, 64, logits);
  struct rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  fmt::print("peak_rss_kb {}\n", usage.ru_maxrss);
}

void bench_bf16_memory() {
  const auto dir = model_dir("llama2-7b-2layers-bf16");
  // A fresh process (not fork(): OpenMP's thread pool does not survive a fork), so the
  // peak RSS is that of loading + running alone.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string output = run_command("'" + self + "' --memory-child '" + dir.string() + "'");
  const auto at = output.find("peak_rss_kb ");
  if (at == std::string::npos) {
    fmt::print("memory child failed: {}\n", output);
    return;
  }
  const double peak = std::stod(output.substr(at + 12)) * 1024.0;
  const double file = static_cast<double>(std::filesystem::file_size(dir / "model.safetensors"));
  fmt::print("BF16 LLaMA-2-7B-shaped (2 layers): file {:.2f} GB, peak RSS {:.2f} GB, ratio {:.2f}x (target <= 1.3x)\n", file / 1e9,
             peak / 1e9, peak / file);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t windows = 8;
  bool with_torch = true, memory = true;
  if (argc == 3 && std::string(argv[1]) == "--memory-child") {
    memory_child(argv[2]);
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--windows" && i + 1 < argc) windows = std::stoll(argv[++i]);
    else if (arg == "--skip-torch") with_torch = false;
    else if (arg == "--skip-memory") memory = false;
  }
  bench_ppl_throughput(windows, with_torch);
  if (memory) bench_bf16_memory();
  return 0;
}
