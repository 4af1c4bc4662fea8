// End-to-end speed of the integer engine against the fake-quant path and FP32, on generated
// models: prefill (one forward of --prompt-tokens tokens, KV cache) and decode (--gen-tokens
// single-token forwards), median of --repeats runs, all settings in one run so ratios are
// comparable. Also CrossQuant's run-time overhead over per-token on the integer path.
//   bench_engine [--prompt-tokens 512] [--gen-tokens 16] [--repeats 3] [--preset NAME]...
//               [--models-dir build/bench-models] [--quick | --hadamard-only]
// (--hadamard-only: FP32 and the plain and rotated W8A8/W4A4 per-token int rows, with the
// online Hadamard transform's share of the rotated prefill and decode.)
// Defaults: presets opt-125m-shape and llama2-7b-2layers (FP32 checkpoint, so the FP32
// baseline converts nothing). Run with OMP_WAIT_POLICY=PASSIVE on a quiet machine.
// The FP32 baseline is measured first and last; ratios use the faster of the two.
// Decode is also reported for the decoder layers alone: lm_head stays FP32 in every setting
// (the paper quantizes decoder linears only) and dominates decode on small stacks, so the
// bench times the same FP32 lm_head GEMV (1 × hidden · vocab × hidden) on its own and
// subtracts it from every setting's per-token decode time ("layers"; for the +lm_head rows,
// which run lm_head as INT8 with --quantize-lm-head, that column subtracts too much: read
// their whole decode).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm_f32.h"
#include "kernels/hadamard.h"
#include "model/config.h"
#include "model/synthetic.h"
#include "model/transformer.h"
#include "ptq/integer_linear.h"
#include "ptq/apply_quantization.h"
#include "quant/resolve_config.h"
#include "quant/quant_config.h"

namespace fs = std::filesystem;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median seconds of one FP32 lm_head GEMV (1 × hidden against vocab × hidden weights that
// live in DRAM, as in decoding), the part of every setting's decode that is not quantized.
double time_lm_head(int64_t hidden, int64_t vocab, int64_t repetitions) {
  std::vector<float> weight(static_cast<size_t>(vocab * hidden)), x(static_cast<size_t>(hidden)),
      y(static_cast<size_t>(vocab));
  std::mt19937 random(7);
  std::normal_distribution<float> normal(0.f, 0.02f);
  for (float& w : weight) w = normal(random);
  for (float& v : x) v = normal(random);
  std::vector<double> seconds;
  for (int64_t r = 0; r < std::max<int64_t>(repetitions, 3); ++r) {
    const auto start = std::chrono::steady_clock::now();
    cq::kernels::gemm_f32(x.data(), weight.data(), nullptr, y.data(), 1, vocab, hidden);
    seconds.push_back(seconds_since(start));
  }
  return median(seconds);
}

struct Setting {
  std::string name;
  std::string scheme;  // empty: FP32
  std::string act = "per-token";
  bool calibrated = false;
  std::string engine = "fake";
  bool static_decode = false;  // dynamic CrossQuant: calibrated c for decode rows
  bool rotate = false;         // --rotate hadamard (its online transform of down_proj's input runs in the timings)
  bool quantize_lm_head = false;  // --quantize-lm-head (INT8 lm_head on the integer engine)
};

// Seconds of the online Hadamard transforms of one forward over `rows` tokens: one per layer,
// on rows × intermediate_size (median of `repeats`).
double time_down_transform(const fs::path& dir, int64_t rows, int repeats) {
  const cq::ModelConfig config = cq::load_model_config(dir);
  const cq::kernels::HadamardTransform transform(config.intermediate_size);
  std::vector<float> data(static_cast<size_t>(rows * config.intermediate_size), 0.5f);
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t l = 0; l < config.num_layers; ++l) transform.apply(data.data(), rows);
    seconds.push_back(seconds_since(start));
  }
  return median(seconds);
}

struct Result {
  double prefill_s = 0, decode_s = 0, setup_s = 0;
  // Rotated settings: the online transform alone on the prompt's rows, timed right after each
  // prefill, as a share of that prefill (median): on a loaded machine the pair sees the same load.
  double transform_share = -1;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t prompt_tokens = 512, gen_tokens = 16;
  int repeats = 3;
  bool quick = false;
  bool hadamard_only = false;  // --hadamard-only: FP32 and the four rows of the online transform's share
  fs::path models_dir = "build/bench-models";
  std::vector<std::string> presets;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", arg);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--prompt-tokens") prompt_tokens = std::stoll(next());
    else if (arg == "--gen-tokens") gen_tokens = std::stoll(next());
    else if (arg == "--repeats") repeats = std::stoi(next());
    else if (arg == "--preset") presets.push_back(next());
    else if (arg == "--models-dir") models_dir = next();
    else if (arg == "--quick") quick = true;
    else if (arg == "--hadamard-only") hadamard_only = true;
    else {
      fmt::print(stderr, "unknown argument {}\n", arg);
      return 2;
    }
  }
  if (presets.empty()) presets = {"opt-125m-shape", "llama2-7b-2layers"};

  std::vector<Setting> settings = {
      {"FP32", "", "per-token", false, "fake"},
      {"W8A8 per-token fake", "w8a8", "per-token", false, "fake"},
      {"W8A8 per-token int", "w8a8", "per-token", false, "int"},
      {"W8A8 static-CQ fake", "w8a8", "crossquant", true, "fake"},
      {"W8A8 static-CQ int", "w8a8", "crossquant", true, "int"},
      {"W8A8 dynamic-CQ int", "w8a8", "crossquant", false, "int"},
      {"W8A8 dyn-CQ int+static dec", "w8a8", "crossquant", false, "int", true},
      {"W4A8-g128 per-token fake", "w4a8-g128", "per-token", false, "fake"},
      {"W4A8-g128 per-token int", "w4a8-g128", "per-token", false, "int"},
      {"W4A8-g128 static-CQ int", "w4a8-g128", "crossquant", true, "int"},
      {"W8A8 per-token int Hadamard", "w8a8", "per-token", false, "int", false, true},
      {"W4A4 per-token int", "w4a4", "per-token", false, "int"},
      {"W4A4 per-token int Hadamard", "w4a4", "per-token", false, "int", false, true},
      {"W8A8 per-token int+lm_head", "w8a8", "per-token", false, "int", false, false, true},
      {"W4A8-g128 int+lm_head", "w4a8-g128", "per-token", false, "int", false, false, true},
  };
  if (hadamard_only) settings = {settings[0], settings[2], settings[10], settings[11], settings[12]};
  else if (quick)
    settings = {settings[0],  settings[2],  settings[4],  settings[5],  settings[8],
                settings[10], settings[11], settings[12], settings[13], settings[14]};
  // FP32 runs first and again last; the baseline takes the faster of the two for prefill and
  // for decode (drift over the run then lowers the ratios, never raises them).
  settings.push_back({"FP32 (again, last)", "", "per-token", false, "fake"});

  for (const std::string& preset : presets) {
    const fs::path dir = models_dir / preset;
    if (!fs::exists(dir / "config.json")) {
      fmt::print("writing {} ...\n", dir.string());
      cq::write_synthetic_model(preset, dir);
    }
    std::map<std::string, Result> results;
    int64_t vocab = 0;
    int64_t model_hidden = 0;
    for (const Setting& setting : settings) {
      cq::Transformer model(dir);
      const auto& config = model.config();
      vocab = config.vocab_size;
      model_hidden = config.hidden_size;
      std::mt19937 random(42);
      std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(std::min<int64_t>(vocab - 1, 30000)));
      std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
      for (auto& t : prompt) t = id(random);
      cq::QuantConfig quant;
      quant.engine = setting.engine;
      std::vector<int32_t> calibration;
      if (!setting.scheme.empty()) {
        // Resolved as `--scheme S --act-quant A --engine E` would be on the command line.
        cq::QuantRequest request;
        request.scheme = setting.scheme;
        request.values.activation_method = setting.act;
        request.values.engine = setting.engine;
        request.given = {"--scheme", "--act-quant", "--engine"};
        if (setting.rotate) request.values.rotation = "hadamard", request.given.insert("--rotate");
        quant = cq::resolve_quant_config(request);
        quant.quantize_lm_head = setting.quantize_lm_head;
        if (setting.calibrated || setting.static_decode) {
          quant.static_columns = setting.calibrated;
          quant.calib_samples = 2;
          quant.calib_seqlen = 128;
          calibration.resize(256);
          for (auto& t : calibration) t = id(random);
        }
      }
      auto start = std::chrono::steady_clock::now();
      if (setting.static_decode) {
        // Calibrated c for decode, dynamic c per window for prefill (integer_linear.h).
        cq::QuantConfig static_config = quant;
        static_config.static_columns = true;
        const auto absmax = cq::calibrate_static_activations(model, static_config, calibration);
        cq::install_integer_backends(model, quant, absmax);
      } else {
        cq::apply_quantization(model, quant, calibration);
      }
      Result result;
      result.setup_s = seconds_since(start);
      std::vector<float> logits(static_cast<size_t>(vocab));
      std::vector<double> prefill, decode, transform_share;
      for (int r = 0; r < repeats; ++r) {
        cq::KVCache cache = model.make_cache(1, prompt_tokens + gen_tokens);
        start = std::chrono::steady_clock::now();
        model.forward(prompt, 1, prompt_tokens, logits, &cache, true);
        prefill.push_back(seconds_since(start));
        if (setting.rotate) transform_share.push_back(time_down_transform(dir, prompt_tokens, 1) / prefill.back());
        start = std::chrono::steady_clock::now();
        for (int64_t g = 0; g < gen_tokens; ++g) {
          const std::vector<int32_t> step{static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
          model.forward(step, 1, 1, logits, &cache, true);
        }
        decode.push_back(seconds_since(start));
      }
      result.prefill_s = median(prefill);
      result.decode_s = median(decode);
      if (!transform_share.empty()) result.transform_share = median(transform_share);
      results[setting.name] = result;
      fmt::print("{:<28} setup {:7.2f} s  prefill {:8.1f} tok/s  decode {:7.2f} tok/s\n", setting.name, result.setup_s,
                 static_cast<double>(prompt_tokens) / result.prefill_s,
                 static_cast<double>(gen_tokens) / result.decode_s);
      std::fflush(stdout);
    }
    const double lm_head_s = time_lm_head(model_hidden, vocab, gen_tokens * repeats);
    Result fp32 = results.at("FP32");
    fp32.prefill_s = std::min(fp32.prefill_s, results.at("FP32 (again, last)").prefill_s);
    fp32.decode_s = std::min(fp32.decode_s, results.at("FP32 (again, last)").decode_s);
    const double fp32_layers_s = fp32.decode_s / static_cast<double>(gen_tokens) - lm_head_s;
    fmt::print("\n{}: {} prompt tokens, {} generated, median of {}; FP32 lm_head GEMV {:.2f} ms per token\n", preset,
               prompt_tokens, gen_tokens, repeats, 1e3 * lm_head_s);
    fmt::print("{:<28} {:>12} {:>10} {:>12} {:>10} {:>14}\n", "setting", "prefill t/s", "vs FP32", "decode t/s", "vs FP32",
               "layers vs FP32");
    for (const Setting& setting : settings) {
      const Result& r = results.at(setting.name);
      const double layers_s = r.decode_s / static_cast<double>(gen_tokens) - lm_head_s;
      fmt::print("{:<28} {:12.1f} {:9.2f}x {:12.2f} {:9.2f}x {:13.2f}x\n", setting.name,
                 static_cast<double>(prompt_tokens) / r.prefill_s, fp32.prefill_s / r.prefill_s,
                 static_cast<double>(gen_tokens) / r.decode_s, fp32.decode_s / r.decode_s, fp32_layers_s / layers_s);
    }
    auto overhead = [&](const std::string& cq_name, const std::string& pt_name) {
      if (!results.count(cq_name) || !results.count(pt_name)) return;
      const Result& c = results.at(cq_name);
      const Result& p = results.at(pt_name);
      fmt::print("CrossQuant overhead ({} over {}): prefill {:+.1f} %, decode {:+.1f} %\n", cq_name, pt_name,
                 100.0 * (c.prefill_s / p.prefill_s - 1.0), 100.0 * (c.decode_s / p.decode_s - 1.0));
    };
    // Issue 19's decode target: W4A8-g128 against W8A8 (both per-token int), whole and layers.
    if (results.count("W4A8-g128 per-token int") && results.count("W8A8 per-token int")) {
      const Result& w4 = results.at("W4A8-g128 per-token int");
      const Result& w8 = results.at("W8A8 per-token int");
      const auto layers = [&](const Result& r) { return r.decode_s / static_cast<double>(gen_tokens) - lm_head_s; };
      fmt::print("W4A8-g128 / W8A8 per-token int decode speed: whole {:.2f}x, layers {:.2f}x; prefill {:.2f}x\n",
                 w8.decode_s / w4.decode_s, layers(w8) / layers(w4), w8.prefill_s / w4.prefill_s);
    }
    for (const auto& [with_head, without] : {std::pair<std::string, std::string>{"W8A8 per-token int+lm_head", "W8A8 per-token int"},
                                             {"W4A8-g128 int+lm_head", "W4A8-g128 per-token int"}}) {
      if (!results.count(with_head) || !results.count(without)) continue;
      fmt::print("--quantize-lm-head: {} decode {:.2f}x, prefill {:.2f}x the FP32-lm_head run\n", without,
                 results.at(without).decode_s / results.at(with_head).decode_s,
                 results.at(without).prefill_s / results.at(with_head).prefill_s);
    }
    if (results.count("W8A8 dynamic-CQ int") && results.count("W8A8 per-token int")) {
      const Result& dynamic = results.at("W8A8 dynamic-CQ int");
      const Result& per_token = results.at("W8A8 per-token int");
      fmt::print("W8A8 dynamic-CQ / per-token int speed: prefill {:.2f}x, decode {:.2f}x\n",
                 per_token.prefill_s / dynamic.prefill_s, per_token.decode_s / dynamic.decode_s);
    }
    overhead("W8A8 static-CQ int", "W8A8 per-token int");
    overhead("W8A8 dynamic-CQ int", "W8A8 per-token int");
    overhead("W4A8-g128 static-CQ int", "W4A8-g128 per-token int");
    // The online Hadamard transform of down_proj's input: the rotated run against the plain
    // one (noisy: two whole runs), and the transform timed alone on the same rows.
    const double transform_prefill_s = time_down_transform(dir, prompt_tokens, repeats);
    const double transform_decode_s = time_down_transform(dir, 1, repeats * 8);
    for (const char* scheme : {"W8A8", "W4A4"}) {
      const std::string plain = fmt::format("{} per-token int", scheme), rotated = plain + " Hadamard";
      if (!results.count(plain) || !results.count(rotated)) continue;
      const Result& p = results.at(plain);
      const Result& h = results.at(rotated);
      fmt::print("Hadamard rotation ({} over {}): prefill {:+.1f} %, decode {:+.1f} %; the online transform alone: "
                 "{:.1f} % of the rotated prefill ({:.1f} % paired with each prefill), {:.1f} % of a rotated decode step\n",
                 rotated, plain, 100.0 * (h.prefill_s / p.prefill_s - 1.0), 100.0 * (h.decode_s / p.decode_s - 1.0),
                 100.0 * transform_prefill_s / h.prefill_s, 100.0 * h.transform_share,
                 100.0 * transform_decode_s / (h.decode_s / static_cast<double>(gen_tokens)));
    }
    fmt::print("\n");
  }
  return 0;
}
