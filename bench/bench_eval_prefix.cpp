// Shared-prefix batching of the log-likelihood engine on HellaSwag (4 choices per document):
// the cost of scoring every request against the cost of running the contexts alone (the
// floor: each context must be run once), and against one full forward per request.
// Reports forward calls, token positions, median seconds, requests/s and tokens/s.
//   bench_eval_prefix [--data DIR] [--docs N] [--repeats R] [--model DIR]... [--synthetic PRESET]...
// Defaults: $CQ_SHARED/data (or ../shared/data), 100 docs, 3 repeats, the shared tinyopt and
// stories260k models, and the opt-125m-shape synthetic model (HellaSwag tokenized with
// tinyopt's tokenizer, whose ids are valid in its larger vocabulary).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "eval/loglikelihood.h"
#include "eval/task.h"
#include "model/synthetic.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct Measure {
  int64_t forward_calls = 0, positions = 0, requests = 0, request_tokens = 0;
  double seconds = 0;
};

template <typename Run>
Measure timed(int repeats, Run run) {
  std::vector<double> times;
  Measure m;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    m = run();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  m.seconds = median(times);
  return m;
}

void bench_model(const std::string& label, const fs::path& model_dir, const cq::Tokenizer& tokenizer,
                 const cq::Task& task, int repeats) {
  cq::Transformer model(model_dir);
  // Encode once: tokenization is not what is measured.
  std::vector<std::vector<cq::EncodedRequest>> docs;
  int64_t context_tokens = 0;
  for (const auto& doc : task.docs) {
    std::vector<cq::EncodedRequest> requests;
    for (const auto& choice : doc.choices) requests.push_back(cq::encode_request(tokenizer, doc.context, " " + choice, false));
    context_tokens += static_cast<int64_t>(requests[0].context.size());
    docs.push_back(std::move(requests));
  }
  const int64_t vocab = model.config().vocab_size;
  std::vector<float> logits;
  const Measure contexts = timed(repeats, [&] {
    Measure m;
    for (const auto& requests : docs) {
      const auto& context = requests[0].context;
      const int64_t length = static_cast<int64_t>(context.size());
      logits.resize(static_cast<size_t>(vocab));
      model.forward(context, 1, length, logits, nullptr, true);
      ++m.forward_calls;
      m.positions += length;
    }
    return m;
  });
  const auto engine_run = [&](bool shared) {
    return timed(repeats, [&] {
      cq::LoglikelihoodOptions options;
      options.shared_prefix = shared;
      cq::LoglikelihoodEngine engine(model, tokenizer, options);
      for (const auto& requests : docs) engine.score_encoded(requests);
      const cq::EngineStats& s = engine.stats();
      return Measure{s.forward_calls, s.positions, s.requests, s.request_tokens, 0};
    });
  };
  const Measure shared = engine_run(true), full = engine_run(false);
  fmt::print("\n{} ({} docs, {} requests, {:.1f} context tokens/doc)\n", label, docs.size(), shared.requests,
             static_cast<double>(context_tokens) / static_cast<double>(docs.size()));
  fmt::print("| {:<26} | {:>8} | {:>9} | {:>10} | {:>9} | {:>10} | {:>9} | {:>10} |\n", "mode", "forwards", "positions",
             "x contexts", "seconds", "x contexts", "requests/s", "tokens/s");
  const auto row = [&](const char* name, const Measure& m) {
    const bool engine = m.requests > 0;
    fmt::print("| {:<26} | {:>8} | {:>9} | {:>10.2f} | {:>9.3f} | {:>10.2f} | {:>9} | {:>10} |\n", name,
               m.forward_calls, m.positions, static_cast<double>(m.positions) / static_cast<double>(contexts.positions),
               m.seconds, m.seconds / contexts.seconds,
               engine ? fmt::format("{:.1f}", static_cast<double>(m.requests) / m.seconds) : "-",
               engine ? fmt::format("{:.0f}", static_cast<double>(m.request_tokens) / m.seconds)
                      : fmt::format("{:.0f}", static_cast<double>(m.positions) / m.seconds));
  };
  row("contexts alone (floor)", contexts);
  row("shared prefix (default)", shared);
  row("one forward per request", full);
}

}  // namespace

int main(int argc, char** argv) {
  const char* shared_env = std::getenv("CQ_SHARED");
  fs::path shared = shared_env && *shared_env ? fs::path(shared_env) : fs::path("../shared");
  fs::path data = shared / "data";
  int64_t docs = 100;
  int repeats = 3;
  std::vector<fs::path> models;
  std::vector<std::string> presets;
  bool defaults = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--data") data = value;
    else if (flag == "--docs") docs = std::stoll(value);
    else if (flag == "--repeats") repeats = std::stoi(value);
    else if (flag == "--model") models.push_back(value), defaults = false;
    else if (flag == "--synthetic") presets.push_back(value), defaults = false;
    else {
      fmt::print(stderr, "unknown flag {}\n", flag);
      return 2;
    }
  }
  if (defaults) {
    models = {shared / "models/tinyopt", shared / "models/stories260k"};
    presets = {"opt-125m-shape"};
  }
  try {
    const cq::Task task = cq::load_task("hellaswag", data, docs);
    fmt::print("HellaSwag shared-prefix benchmark: {} docs from {}, median of {} runs; tokens/s counts the "
               "positions a full forward per request would score\n",
               task.docs.size(), task.sources[0].string(), repeats);
    for (const auto& dir : models) {
      const auto tokenizer = cq::load_tokenizer(dir);
      bench_model(dir.filename().string(), dir, *tokenizer, task, repeats);
    }
    for (const auto& preset : presets) {
      const fs::path dir = fs::path("build/bench-models") / preset;
      if (!fs::exists(dir / "config.json")) cq::write_synthetic_model(preset, dir);
      const auto tokenizer = cq::load_tokenizer(shared / "models/tinyopt");
      bench_model(preset + " (synthetic; tinyopt tokenizer)", dir, *tokenizer, task, repeats);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_eval_prefix: {}\n", e.what());
    return 1;
  }
  return 0;
}
