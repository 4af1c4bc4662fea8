// crossquant.Model: a model directory, and what `cq ppl`, `cq kernel`, `cq eval`,
// `cq generate` and `cq quantize` do with it, the quantization flags as keyword arguments.
// Each call loads the weights afresh (memory-mapped) and quantizes them as its keywords say,
// as each `cq` command does, so a call's numbers are those of the same command line.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "cli/output_paths.h"
#include "eval/generation.h"
#include "eval/harness.h"
#include "eval/perplexity.h"
#include "eval/share_context.h"
#include "eval/task.h"
#include "model/position_limit.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "ptq/kernel_report.h"
#include "ptq/quantized_checkpoint.h"
#include "python/bindings.h"
#include "python/python_support.h"
#include "python/quant_arguments.h"
#include "quant/flag_effects.h"
#include "quant/resolve_config.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::python {

namespace {

// A count keyword as the CLI's positive_count() checks it (None: the default).
int64_t count_or(const std::optional<int64_t>& value, const char* keyword, int64_t default_value) {
  if (!value) return default_value;
  if (*value < 1) fail("{} must be a count >= 1 (got {})", keyword, *value);
  return *value;
}

class Model {
 public:
  explicit Model(std::string path) : path_(std::move(path)) {
    without_gil([&] {
      Transformer model = load_model(path_);  // validates the directory now, not at the first call
      config_ = model.config();
      if (const StoredQuantization* stored = stored_quantization(model)) stored_ = stored->config.describe();
      tokenizer_ = load_tokenizer(path_);
      return 0;
    });
  }

  py::dict info() const {
    py::dict d;
    d["model"] = path_;
    d["family"] = config_.family_name();
    d["layers"] = config_.num_layers;
    d["hidden_size"] = config_.hidden_size;
    d["intermediate_size"] = config_.intermediate_size;
    d["num_heads"] = config_.num_heads;
    d["num_kv_heads"] = config_.num_kv_heads;
    d["vocab_size"] = config_.vocab_size;
    d["max_position_embeddings"] = config_.max_position_embeddings;
    d["tokenizer"] = tokenizer_->kind();
    d["quantization"] = stored_.empty() ? py::object(py::none()) : py::object(py::str(stored_));
    return d;
  }

  std::vector<int32_t> encode(const std::string& text) const { return tokenizer_->encode(text, true); }
  std::string decode(const std::vector<int32_t>& ids) const { return tokenizer_->decode(ids, true); }

  // `cq ppl --json`'s object (model, text, tokens, seqlen, windows, perplexity, mean_nll,
  // window_nll, seconds, quantization, and kernel when activations are quantized).
  py::object perplexity(const std::optional<std::string>& text, const std::optional<std::string>& text_file,
                        std::optional<int64_t> seqlen, std::optional<int64_t> max_windows, std::optional<int64_t> batch,
                        const py::kwargs& quant_keywords) {
    const auto arguments = parse_quant_arguments(quant_keywords, "perplexity");
    PerplexityOptions options;
    options.max_windows = count_or(max_windows, "max_windows", 0);
    options.batch = count_or(batch, "batch", 1);
    const int64_t seqlen_given = count_or(seqlen, "seqlen", 0);
    const std::string source = text_argument(text, text_file);
    const nlohmann::json json = without_gil([&] {
      const QuantConfig quant = arguments->options.resolve();
      Transformer model = load_model(path_);
      check_position_limit(model.config(), path_, seqlen_given, fmt::format("seqlen={}", seqlen_given));
      const std::vector<int32_t> tokens = tokenizer_->encode(read_text(text, text_file), true);
      const QuantConfig applied = apply_quantization(model, quant, arguments->options.calibration_tokens(*tokenizer_)).applied;
      options.seqlen = seqlen_given > 0 ? seqlen_given : std::min<int64_t>(2048, model.config().max_position_embeddings);
      const PerplexityResult result = evaluate_perplexity(model, tokens, options);
      nlohmann::json out = {{"model", path_},          {"text", source},
                            {"tokens", result.tokens_total}, {"seqlen", options.seqlen},
                            {"windows", result.windows},     {"perplexity", result.perplexity},
                            {"mean_nll", result.mean_nll},   {"window_nll", result.window_nll},
                            {"seconds", result.seconds},     {"quantization", applied.to_json()}};
      if (applied.quantizes_activations()) out["kernel"] = kernel_report_json(model);
      return out;
    });
    return to_python(json);
  }

  // One entry of `cq kernel --json`'s results: the kernel per linear layer and in total,
  // the setting, its perplexity, windows and seqlen. Activations default to 8 bits, as there.
  py::object kernel(const std::optional<std::string>& text, const std::optional<std::string>& text_file,
                    std::optional<int64_t> seqlen, std::optional<int64_t> max_windows, const py::kwargs& quant_keywords) {
    const auto arguments = parse_quant_arguments(quant_keywords, "kernel");
    PerplexityOptions options;
    options.max_windows = count_or(max_windows, "max_windows", 0);
    options.progress_label = "kernel";
    const int64_t seqlen_given = count_or(seqlen, "seqlen", 0);
    const nlohmann::json json = without_gil([&] {
      QuantConfig quant = arguments->options.resolve(/*check_effects=*/false);
      if (!quant.quantizes_activations()) quant.activation_bits = 8;  // a kernel needs quantized activations
      require_flags_take_effect(arguments->options.given_flags(), quant);
      const std::vector<int32_t> tokens = tokenizer_->encode(read_text(text, text_file), true);
      Transformer model = load_model(path_);
      check_position_limit(model.config(), path_, seqlen_given, fmt::format("seqlen={}", seqlen_given));
      const QuantConfig applied = apply_quantization(model, quant, arguments->options.calibration_tokens(*tokenizer_)).applied;
      options.seqlen = seqlen_given > 0 ? seqlen_given : std::min<int64_t>(2048, model.config().max_position_embeddings);
      const PerplexityResult result = evaluate_perplexity(model, tokens, options);
      nlohmann::json entry = kernel_report_json(model);
      entry["quantization"] = applied.to_json();
      entry["perplexity"] = result.perplexity;
      entry["windows"] = result.windows;
      entry["seqlen"] = options.seqlen;
      return entry;
    });
    return to_python(json);
  }

  // lm-eval tasks as `cq eval` scores them: {task: {docs, metrics: [...]}, ..., "quantization": {...}}.
  py::object evaluate(const std::vector<std::string>& tasks, const std::string& data_dir, std::optional<int64_t> limit,
                      std::optional<int64_t> num_fewshot, bool add_bos, std::optional<int64_t> max_length,
                      const py::kwargs& quant_keywords) {
    const auto arguments = parse_quant_arguments(quant_keywords, "evaluate");
    if (tasks.empty()) fail("evaluate: tasks names no task");
    const int64_t doc_limit = count_or(limit, "limit", 0);
    if (num_fewshot) {
      if (*num_fewshot < 0) fail("num_fewshot {} is negative", *num_fewshot);
      if (std::none_of(tasks.begin(), tasks.end(), [&](const std::string& name) { return *num_fewshot != (name == "mmlu" ? 5 : 0); }))
        fail("num_fewshot {} changes nothing: it is the default of every task in tasks (0; mmlu 5)", *num_fewshot);
    }
    LoglikelihoodOptions engine_options;
    engine_options.add_bos = add_bos;
    engine_options.max_length = max_length ? count_or(max_length, "max_length", 0) : 0;
    const nlohmann::json json = without_gil([&] {
      const QuantConfig quant = arguments->options.resolve();
      std::vector<Task> loaded;
      for (const std::string& name : tasks) loaded.push_back(load_task(name, data_dir, doc_limit, num_fewshot.value_or(-1)));
      Transformer model = load_model(path_);
      const QuantConfig applied = apply_quantization(model, quant, arguments->options.calibration_tokens(*tokenizer_)).applied;
      engine_options.share_context = activations_are_per_row(applied);
      LoglikelihoodEngine engine(model, *tokenizer_, engine_options);
      nlohmann::json out = {{"quantization", applied.to_json()}, {"results", nlohmann::json::object()}};
      for (const Task& task : loaded) out["results"][task.name] = results_json(run_task(engine, task), false);
      return out;
    });
    return to_python(json);
  }

  // `cq generate`: {"text": prompt + continuation, "ids": generated ids}.
  py::dict generate(const std::string& prompt, std::optional<int64_t> tokens, double temperature, uint64_t seed,
                    const py::kwargs& quant_keywords) {
    const auto arguments = parse_quant_arguments(quant_keywords, "generate", "auto");
    if (temperature < 0) fail("temperature must be >= 0");
    GenerationOptions options;
    options.new_tokens = count_or(tokens, "tokens", 64);
    options.temperature = temperature;
    options.seed = seed;
    options.eos_id = tokenizer_->eos_id();
    std::string text;
    const std::vector<int32_t> generated = without_gil([&] {
      const QuantConfig quant = arguments->options.resolve();
      Transformer model = load_model(path_);
      const std::vector<int32_t> prompt_ids = tokenizer_->encode(prompt, true);
      if (prompt_ids.empty()) fail("the prompt encodes to no tokens");
      check_position_limit(model.config(), path_, static_cast<int64_t>(prompt_ids.size()) + options.new_tokens,
                           fmt::format("a prompt of {} tokens + tokens={}", prompt_ids.size(), options.new_tokens));
      apply_quantization(model, quant, arguments->options.calibration_tokens(*tokenizer_));
      std::vector<int32_t> ids = generate_tokens(model, prompt_ids, options);
      text = prompt + tokenizer_->decode(ids, true);
      return ids;
    });
    py::dict result;
    result["text"] = text;
    result["ids"] = generated;
    return result;
  }

  // `cq quantize --out DIR`: writes the quantized checkpoint; returns its setting's description.
  std::string quantize(const std::string& out, const py::kwargs& quant_keywords) {
    const auto arguments = parse_quant_arguments(quant_keywords, "quantize");
    return without_gil([&] {
      const QuantConfig quant = arguments->options.resolve();
      cli::check_output_directory("out", out);
      if (quant.engine != "fake")
        fail("quantize: engine is chosen when the checkpoint runs (engine='int' in perplexity/generate/kernel), not stored");
      Transformer model = load_model(path_);
      if (stored_quantization(model)) fail("{} is already a quantized checkpoint", path_);
      const std::vector<int32_t> calibration = arguments->options.calibration_tokens(*tokenizer_);
      const QuantizationRecord record = apply_transformation(model, quant, calibration);
      const auto static_absmax = calibrate_static_activations(model, quant, calibration);
      write_quantized_checkpoint(model, quant, record, static_absmax, out);
      return quant.describe();
    });
  }

  const std::string& path() const { return path_; }

 private:
  // Exactly one of text (the text itself) and text_file (a path, as `cq --text`).
  static std::string text_argument(const std::optional<std::string>& text, const std::optional<std::string>& text_file) {
    if (text.has_value() == text_file.has_value()) fail("give text (a string) or text_file (a path), one of them");
    return text_file ? *text_file : std::string("<text>");
  }
  static std::string read_text(const std::optional<std::string>& text, const std::optional<std::string>& text_file) {
    text_argument(text, text_file);
    return text ? *text : read_text_file(*text_file);
  }

  std::string path_;
  ModelConfig config_;
  std::string stored_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace

void bind_model(py::module_& m) {
  const std::string quant_keywords = "Quantization keywords (cq's flags without '--', '-' as '_'; None = not given, "
                                     "flags take True): " + quant_keyword_names() + ".";
  py::class_<Model>(m, "Model", "A Hugging Face model directory (OPT, LLaMA; or one cq quantize wrote).")
      .def(py::init<std::string>(), py::arg("path"))
      .def_property_readonly("path", &Model::path)
      .def("info", &Model::info, "family, sizes, tokenizer, stored quantization (as cq info)")
      .def("encode", &Model::encode, py::arg("text"), "token ids (BOS as the tokenizer adds it)")
      .def("decode", &Model::decode, py::arg("ids"), "text of token ids")
      .def("perplexity", &Model::perplexity, py::kw_only(), py::arg("text") = py::none(), py::arg("text_file") = py::none(),
           py::arg("seqlen") = py::none(), py::arg("max_windows") = py::none(), py::arg("batch") = py::none(),
           ("Perplexity as cq ppl computes it (SPEC.md protocol); returns cq ppl --json's object. " + quant_keywords).c_str())
      .def("kernel", &Model::kernel, py::kw_only(), py::arg("text") = py::none(), py::arg("text_file") = py::none(),
           py::arg("seqlen") = py::none(), py::arg("max_windows") = py::none(),
           ("Kernel statistics per linear layer, as one entry of cq kernel --json. " + quant_keywords).c_str())
      .def("evaluate", &Model::evaluate, py::arg("tasks"), py::kw_only(), py::arg("data_dir"),
           py::arg("limit") = py::none(), py::arg("num_fewshot") = py::none(), py::arg("add_bos") = false,
           py::arg("max_length") = py::none(),
           ("lm-eval tasks as cq eval scores them: {'quantization', 'results': {task: metrics}}. " + quant_keywords).c_str())
      .def("generate", &Model::generate, py::arg("prompt"), py::kw_only(), py::arg("tokens") = py::none(),
           py::arg("temperature") = 0.0, py::arg("seed") = 0,
           ("Continue a prompt as cq generate does (engine defaults to auto): {'text', 'ids'}. " + quant_keywords).c_str())
      .def("quantize", &Model::quantize, py::arg("out"),
           ("Write a quantized checkpoint as cq quantize --out does; returns the setting. " + quant_keywords).c_str());
}

}  // namespace cq::python
