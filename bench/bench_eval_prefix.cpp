// Packed scoring of the log-likelihood engine on HellaSwag (4 choices per document): the cost
// of scoring every request against the cost of running the contexts alone (the baseline:
// one forward per context, each context must be run once), for every scoring mode: packed
// (several questions per forward, each context once as a tree), packed with one question per
// forward, packed without context sharing (what dynamic CrossQuant activations use), and one
// full forward per request. Reports forward calls, token positions and median seconds, each
// also as a ratio to the contexts alone, plus requests/s and tokens/s. Wall and process CPU
// seconds are medians over repeats that interleave the modes.
//   bench_eval_prefix [--data DIR] [--docs N] [--repeats R] [--model DIR]... [--synthetic PRESET]...
// Defaults: $CQ_SHARED/data (or ../shared/data), 100 docs, 5 repeats, the shared tinyopt and
// stories260k models, and the opt-125m-shape synthetic model (HellaSwag tokenized with
// tinyopt's tokenizer, whose ids are valid in its larger vocabulary).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
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

double process_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

struct Measure {
  int64_t forward_calls = 0, positions = 0, requests = 0, request_tokens = 0;
  double seconds = 0, cpu_seconds = 0;  // medians
};

struct Mode {
  Mode(std::string label, std::function<Measure()> runner) : name(std::move(label)), run(std::move(runner)) {}
  std::string name;
  std::function<Measure()> run;
  std::vector<double> seconds, cpu_seconds;
  Measure measure;
};

void bench_model(const std::string& label, const fs::path& model_dir, const cq::Tokenizer& tokenizer,
                 const cq::Task& task, int repeats) {
  cq::Transformer model(model_dir);
  // Encode once: tokenization is not what is measured.
  std::vector<cq::EncodedQuestion> docs;
  int64_t context_tokens = 0;
  for (const auto& doc : task.docs) {
    std::vector<cq::EncodedRequest> requests;
    for (const auto& choice : doc.choices) requests.push_back(cq::encode_request(tokenizer, doc.context, " " + choice, false));
    context_tokens += static_cast<int64_t>(requests[0].context.size());
    docs.push_back(std::move(requests));
  }
  const int64_t vocab = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(vocab));
  const auto contexts_alone = [&] {
    Measure m;
    for (const auto& requests : docs) {
      const auto& context = requests[0].context;
      const auto length = static_cast<int64_t>(context.size());
      model.forward(context, 1, length, logits, nullptr, true);
      ++m.forward_calls;
      m.positions += length;
    }
    return m;
  };
  const auto engine_run = [&](const cq::LoglikelihoodOptions& options) {
    return [&, options] {
      cq::LoglikelihoodEngine engine(model, tokenizer, options);
      engine.score_questions(docs);
      const cq::EngineStats& s = engine.stats();
      return Measure{s.forward_calls, s.positions, s.requests, s.request_tokens};
    };
  };
  cq::LoglikelihoodOptions packed, one_question, unshared, per_request;
  one_question.packed_tokens = 1;  // a question never waits for another
  unshared.share_context = false;
  per_request.mode = cq::ScoringMode::PerRequest;
  std::vector<Mode> modes = {{"contexts alone (baseline)", contexts_alone},
                             {fmt::format("packed, {} positions/forward (default)", packed.packed_tokens), engine_run(packed)},
                             {"packed, one question per forward", engine_run(one_question)},
                             {"packed, no context sharing", engine_run(unshared)},
                             {"one forward per request", engine_run(per_request)}};
  // Repeats interleave the modes, so a change in the machine's load reaches all of them.
  for (int r = 0; r < repeats; ++r)
    for (Mode& mode : modes) {
      const double cpu_start = process_cpu_seconds();
      const auto start = std::chrono::steady_clock::now();
      mode.measure = mode.run();
      mode.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      mode.cpu_seconds.push_back(process_cpu_seconds() - cpu_start);
    }
  for (Mode& mode : modes) {
    mode.measure.seconds = median(mode.seconds);
    mode.measure.cpu_seconds = median(mode.cpu_seconds);
  }

  const Measure& base = modes[0].measure;
  fmt::print("\n{} ({} docs, {} requests, {:.1f} context tokens/doc)\n", label, docs.size(), modes[1].measure.requests,
             static_cast<double>(context_tokens) / static_cast<double>(docs.size()));
  fmt::print("| {:<40} | {:>8} | {:>5} | {:>9} | {:>5} | {:>7} | {:>5} | {:>7} | {:>5} | {:>10} | {:>8} |\n", "mode",
             "forwards", "x", "positions", "x", "wall s", "x", "CPU s", "x", "requests/s", "tokens/s");
  fmt::print("|{:-<42}|{:->10}|{:->7}|{:->11}|{:->7}|{:->9}|{:->7}|{:->9}|{:->7}|{:->12}|{:->10}|\n", "", "", "", "", "",
             "", "", "", "", "", "");
  const auto ratio = [](auto value, auto baseline) { return static_cast<double>(value) / static_cast<double>(baseline); };
  for (const Mode& mode : modes) {
    const Measure& m = mode.measure;
    const bool engine = m.requests > 0;
    fmt::print("| {:<40} | {:>8} | {:>5.2f} | {:>9} | {:>5.2f} | {:>7.3f} | {:>5.2f} | {:>7.3f} | {:>5.2f} | {:>10} | {:>8.0f} |\n",
               mode.name, m.forward_calls, ratio(m.forward_calls, base.forward_calls), m.positions,
               ratio(m.positions, base.positions), m.seconds, m.seconds / base.seconds, m.cpu_seconds,
               m.cpu_seconds / base.cpu_seconds,
               engine ? fmt::format("{:.1f}", static_cast<double>(m.requests) / m.seconds) : "-",
               static_cast<double>(engine ? m.request_tokens : m.positions) / m.seconds);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* shared_env = std::getenv("CQ_SHARED");
  fs::path shared = shared_env && *shared_env ? fs::path(shared_env) : fs::path("../shared");
  fs::path data = shared / "data";
  int64_t docs = 100;
  int repeats = 5;
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
    fmt::print("HellaSwag scoring benchmark: {} docs from {}, median of {} runs; tokens/s counts the "
               "positions one full forward per request would score (the contexts alone: their positions)\n",
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
