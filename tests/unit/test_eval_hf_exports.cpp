// Hugging Face `datasets` JSONL exports (docs/EVAL.md "Tasks and files") of every task, and
// arc_challenge: the shared original files are rewritten in the HF layout of each dataset
// (allenai/ai2_arc, baber/piqa, hellaswag, super_glue/boolq, EleutherAI/lambada_openai,
// cais/mmlu), then scored on tinyopt and compared request by request with the PyTorch
// reference's golden of the original files (tests/reference/eval_reference.py): the same
// documents must give the same requests, log-likelihoods and accuracies whatever the format.
// arc_challenge reads ARC-Easy's questions exported as an arc_challenge folder, so it is
// checked against arc_easy's reference requests, and reports acc_norm as its headline.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "eval/eval_data.h"
#include "eval/harness.h"
#include "eval/lm_eval_results.h"
#include "eval/loglikelihood.h"
#include "eval/task.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/text_file.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

void write_jsonl(const fs::path& file, const std::vector<nlohmann::json>& records) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file);
  for (const auto& record : records) out << record.dump() << "\n";
}

std::vector<nlohmann::json> records(const fs::path& file) {
  std::vector<nlohmann::json> out;
  for (const JsonRecord& record : read_jsonl(file)) out.push_back(record.value);
  return out;
}

// allenai/ai2_arc: {id, question, choices: {text: [...], label: [...]}, answerKey}
std::vector<nlohmann::json> arc_hf(const fs::path& original) {
  std::vector<nlohmann::json> out;
  for (const auto& r : records(original)) {
    nlohmann::json text = nlohmann::json::array(), label = nlohmann::json::array();
    for (const auto& choice : r["question"]["choices"]) text.push_back(choice["text"]), label.push_back(choice["label"]);
    out.push_back({{"id", r["id"]}, {"question", r["question"]["stem"]}, {"choices", {{"text", text}, {"label", label}}},
                   {"answerKey", r["answerKey"]}});
  }
  return out;
}

// The shared data rewritten as HF exports, under the file names docs/EVAL.md lists for them.
fs::path write_hf_exports() {
  const fs::path shared = test::shared_dir() / "data", hf = test::scratch_dir("eval_hf_exports");
  write_jsonl(hf / "lambada_openai" / "test.jsonl", records(shared / "lambada_openai/lambada_test.first100.jsonl"));
  write_jsonl(hf / "arc_easy" / "test.jsonl", arc_hf(shared / "arc_easy/ARC-Easy-Test.first100.jsonl"));
  write_jsonl(hf / "arc_challenge" / "test.jsonl", arc_hf(shared / "arc_easy/ARC-Easy-Test.first100.jsonl"));
  {  // baber/piqa: the label inside each record
    std::vector<nlohmann::json> piqa = records(shared / "piqa/valid.first100.jsonl");
    std::ifstream labels(shared / "piqa/valid-labels.first100.lst");
    for (auto& r : piqa) {
      int label = -1;
      labels >> label;
      r["label"] = label;
    }
    write_jsonl(hf / "piqa" / "validation.jsonl", piqa);
  }
  {  // hellaswag: label as a string ("3")
    std::vector<nlohmann::json> hellaswag = records(shared / "hellaswag/hellaswag_val.first100.jsonl");
    for (auto& r : hellaswag) r["label"] = std::to_string(r["label"].get<int>());
    write_jsonl(hf / "hellaswag" / "validation.jsonl", hellaswag);
  }
  {  // super_glue/boolq: label 0/1
    std::vector<nlohmann::json> boolq = records(shared / "boolq/val.first100.jsonl");
    for (auto& r : boolq) {
      const auto& label = r["label"];
      r["label"] = (label.is_boolean() ? label.get<bool>() : label.get<std::string>() == "true") ? 1 : 0;
    }
    write_jsonl(hf / "boolq" / "validation.jsonl", boolq);
  }
  // cais/mmlu: {question, subject, choices[4], answer: 0..3}, every subject in one file per split.
  for (const std::string split : {"dev", "test"}) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(shared / "mmlu" / split)) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    std::vector<nlohmann::json> rows;
    for (const fs::path& file : files) {
      const std::string name = file.filename().string();
      const std::string subject = name.substr(0, name.size() - split.size() - 5);  // "<s>_<split>.csv"
      for (const CsvRow& row : parse_csv(read_text_file(file), file))
        rows.push_back({{"question", row.fields[0]},
                        {"subject", subject},
                        {"choices", {row.fields[1], row.fields[2], row.fields[3], row.fields[4]}},
                        {"answer", row.fields[5][0] - 'A'}});
    }
    write_jsonl(hf / "mmlu" / (split + ".jsonl"), rows);
  }
  return hf;
}

TEST(EvalHfExports, EveryTaskMatchesTheReference) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/mmlu/test");
  const nlohmann::json golden =
      nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/eval/tinyopt.json"));
  const fs::path hf = write_hf_exports();
  const fs::path model_dir = test::shared_dir() / "models/tinyopt";
  Transformer model(model_dir);
  const auto tokenizer = load_tokenizer(model_dir);
  LoglikelihoodEngine engine(model, *tokenizer, LoglikelihoodOptions{});
  const std::map<std::string, std::string> reference = {
      {"lambada_openai", "lambada_openai"}, {"arc_easy", "arc_easy"}, {"arc_challenge", "arc_easy"},
      {"piqa", "piqa"}, {"hellaswag", "hellaswag"}, {"boolq", "boolq"}, {"mmlu", "mmlu"}};
  for (const auto& [name, golden_task] : reference) {
    SCOPED_TRACE(name);
    const Task task = load_task(name, hf, golden["limit"].get<int64_t>());
    ASSERT_EQ(task.sources.size(), 1u);
    EXPECT_EQ(task.sources[0].extension(), name == "mmlu" ? "" : ".jsonl");
    const TaskResult result = run_task(engine, task, false);
    const nlohmann::json& expected = golden["tasks"][golden_task];
    size_t compared = 0;
    for (const auto& request : expected["requests"]) {
      const auto d = request["doc"].get<size_t>(), i = request["choice"].get<size_t>();
      ASSERT_LT(d, result.scores.size());
      const RequestScore& score = result.scores[d].requests.at(i);
      EXPECT_EQ(score.context_tokens, request["context_tokens"].get<int64_t>()) << d << "/" << i;
      EXPECT_EQ(score.continuation, request["continuation"].get<std::vector<int32_t>>()) << d << "/" << i;
      EXPECT_NEAR(score.loglikelihood, request["ll"].get<double>(), 1e-4) << d << "/" << i;
      ++compared;
    }
    size_t requests = 0;
    for (const auto& doc : result.scores) requests += doc.requests.size();
    EXPECT_EQ(compared, requests);
    for (const MetricRow& row : result.metrics) {
      if (row.task != name || row.metric == "perplexity") continue;
      const std::string correct = row.metric == "acc" ? "correct" : "correct_norm";
      EXPECT_EQ(row.correct, expected["metrics"][correct].get<int64_t>()) << row.metric;
    }
    if (name == "arc_challenge") {
      EXPECT_EQ(headline_metric(name), "acc_norm");
      EXPECT_DOUBLE_EQ(headline_value(result), expected["metrics"]["acc_norm"].get<double>());
      const auto json = lm_eval_results({result}, {task}, {}, {}, false);
      EXPECT_DOUBLE_EQ(json["results"]["arc_challenge"]["acc_norm,none"].get<double>(),
                       expected["metrics"]["acc_norm"].get<double>());
      EXPECT_EQ(json["configs"]["arc_challenge"]["dataset_name"], "ARC-Challenge");
    }
  }
}

// `cq eval --json` end to end: lm-eval's layout on a real run, the stderr from the per-document
// hits, and --num-fewshot's errors.
TEST(EvalHfExports, CliWritesLmEvalResults) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/arc_easy");
  const fs::path model = test::shared_dir() / "models/tinyopt", dir = test::scratch_dir("eval_cli_json");
  const fs::path data = test::shared_dir() / "data";
  const auto result = test::run_cq(fmt::format("eval --model '{}' --data-dir '{}' --tasks arc_easy,lambada_openai --limit 20 "
                                               "--json '{}'",
                                               model.string(), data.string(), (dir / "r.json").string()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(read_text_file(dir / "r.json"));
  const auto& arc = json["results"]["arc_easy"];
  const double acc = arc["acc,none"].get<double>();
  const double n = 20, p = acc;
  // Hits are 0/1: the sample variance is n p (1 - p) / (n - 1).
  EXPECT_NEAR(arc["acc_stderr,none"].get<double>(), std::sqrt(n * p * (1 - p) / (n - 1)) / std::sqrt(n), 1e-12);
  EXPECT_EQ(json["results"]["lambada_openai"]["perplexity_stderr,none"], "N/A");
  EXPECT_EQ(json["n-samples"]["arc_easy"]["original"], 100);
  EXPECT_EQ(json["n-samples"]["arc_easy"]["effective"], 20);
  EXPECT_EQ(json["n-shot"]["arc_easy"], 0);
  EXPECT_EQ(json["config"]["limit"], 20);
  EXPECT_EQ(json["crossquant"]["tasks"]["arc_easy"]["docs"], 20);
  const auto missing = test::run_cq(fmt::format("eval --model '{}' --data-dir '{}' --tasks piqa --num-fewshot 3",
                                                model.string(), data.string()));
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("--num-fewshot 3: piqa needs its few-shot split (train): " +
                                (data / "piqa" / "train.jsonl").string() + " not found"),
            std::string::npos)
      << missing.output;
  const auto nothing = test::run_cq(fmt::format("eval --model '{}' --data-dir '{}' --tasks piqa --num-fewshot 0",
                                                model.string(), data.string()));
  EXPECT_EQ(nothing.exit_code, 1) << nothing.output;
  EXPECT_NE(nothing.output.find("--num-fewshot 0 changes nothing"), std::string::npos) << nothing.output;
}

}  // namespace
}  // namespace cq
