// lm-evaluation-harness compatibility of `cq eval` (docs/EVAL.md "JSON" and "Few-shot"):
// Python's random.Random reproduced bit for bit (golden from /usr/bin/python3), lm-eval's
// few-shot sampling rules, the results file layout, standard errors recomputed by Python,
// and the metric rules the audit found unguarded (acc_norm per character, MMLU's weighting).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "eval/harness.h"
#include "eval/lm_eval_results.h"
#include "eval/task.h"
#include "test_support.h"
#include "util/error.h"
#include "util/python_random.h"
#include "util/text_file.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
using test::error_of;

nlohmann::json random_golden() {
  return nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/eval/python_random.json"));
}

TEST(PythonRandom, MatchesCPython) {
  const nlohmann::json golden = random_golden();
  for (const auto& c : golden["cases"]) {
    const uint64_t seed = c["seed"].get<uint64_t>();
    SCOPED_TRACE(fmt::format("seed {}", seed));
    PythonRandom bits(seed);
    for (int k : {1, 7, 31, 32, 33, 53, 64})
      for (const auto& expected : c["getrandbits"][std::to_string(k)])
        EXPECT_EQ(bits.getrandbits(k), expected.get<uint64_t>()) << k << " bits";
    PythonRandom rnd(seed);  // the samples consume one generator in sequence, as lm-eval does
    for (const auto& s : c["samples_in_sequence"]) {
      const int64_t n = s["population"], k = s["k"];
      EXPECT_EQ(rnd.sample(n, k), s["indices"].get<std::vector<int64_t>>()) << "sample(range(" << n << "), " << k << ")";
    }
  }
  PythonRandom rnd(1234);
  for (const auto& expected : golden["fewshot_1234_pool40_k4x25"])
    EXPECT_EQ(rnd.sample(40, 4), expected.get<std::vector<int64_t>>());
  EXPECT_NE(error_of([] { PythonRandom(1).sample(3, 4); }).find("Sample larger than population"), std::string::npos);
}

// lm-eval's ContextSampler rules (k or k + 1 draws, the evaluated doc dropped, k kept,
// "text target\n\n" per example), against contexts Python built from the definition.
TEST(EvalFewshot, ContextsMatchTheReference) {
  const nlohmann::json golden = random_golden();
  ASSERT_EQ(golden["fewshot_contexts"].size(), 3u);
  for (const auto& c : golden["fewshot_contexts"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const bool multiple_choice = c["name"] != "lambada_like";
    const auto docs_of = [&](const nlohmann::json& list) {
      std::vector<EvalDoc> docs;
      for (const auto& d : list) {
        EvalDoc doc;
        doc.context = d["text"];
        if (multiple_choice) {
          doc.choices = {"other", d["target"].get<std::string>()};
          doc.gold = 1;
        } else {
          doc.target = d["target"];
        }
        doc.identity = d.dump();
        docs.push_back(doc);
      }
      return docs;
    };
    std::vector<EvalDoc> docs = docs_of(c["eval"]);
    add_fewshot_examples(docs, docs_of(c["pool"]), c["k"], c["draw_one_more"], "pool.jsonl");
    const auto expected = c["contexts"].get<std::vector<std::string>>();
    ASSERT_EQ(docs.size(), expected.size());
    for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(docs[i].context, expected[i]) << "doc " << i;
  }
  std::vector<EvalDoc> one(1);
  EXPECT_NE(error_of([&] { add_fewshot_examples(one, one, 1, true, "p.jsonl"); }).find("p.jsonl: 1 few-shot documents"),
            std::string::npos);
}

// The few-shot split's files per task, and a clear error naming them when absent.
TEST(EvalFewshot, TaskFilesAndErrors) {
  const fs::path data = test::scratch_dir("eval_fewshot");
  fs::create_directories(data / "arc_easy");
  const auto arc = [](int i, const char* key) {
    return fmt::format(R"({{"id":"q{0}","question":"Q{0}?","choices":{{"text":["a{0}","b{0}"],"label":["A","B"]}},"answerKey":"{1}"}})",
                       i, key) + "\n";
  };
  std::ofstream(data / "arc_easy" / "test.jsonl") << arc(100, "A") << arc(101, "B") << arc(102, "A");
  const std::string error = error_of([&] { load_task("arc_easy", data, 0, 2); });
  EXPECT_NE(error.find("--num-fewshot 2: arc_easy needs its few-shot split (train): "), std::string::npos) << error;
  EXPECT_NE(error.find("ARC-Easy-Train.jsonl or "), std::string::npos) << error;
  std::string train;
  for (int i = 0; i < 6; ++i) train += arc(i, i % 2 ? "B" : "A");
  std::ofstream(data / "arc_easy" / "train.jsonl") << train;
  const Task task = load_task("arc_easy", data, 2, 2);
  ASSERT_EQ(task.docs.size(), 2u);
  EXPECT_EQ(task.original_docs.at("arc_easy"), 3);
  EXPECT_EQ(task.num_fewshot, 2);
  // random.Random(1234).sample(range(6), 2) twice in a row (ARC: k draws, test_split "test").
  PythonRandom rnd(1234);
  for (const EvalDoc& doc : task.docs) {
    std::string expected;
    for (int64_t i : rnd.sample(6, 2))
      expected += fmt::format("Question: Q{0}?\nAnswer: {1}{0}\n\n", i, i % 2 ? "b" : "a");
    EXPECT_EQ(doc.context.substr(0, expected.size()), expected);
  }
  EXPECT_TRUE(task.docs[1].context.ends_with("\n\nQuestion: Q101?\nAnswer:")) << task.docs[1].context;
  EXPECT_EQ(load_task("arc_easy", data, 0, 0).docs[0].context, "Question: Q100?\nAnswer:");
}

// piqa, hellaswag and boolq leave fewshot_split and test_split unset (equal), so lm-eval
// draws n + 1 examples per document and keeps the first n (none equals the evaluated doc).
TEST(EvalFewshot, ValidationSplitTasksDrawOneMore) {
  const fs::path data = test::scratch_dir("eval_fewshot_mc");
  const auto write = [&](const std::string& task, const std::string& file, const std::function<std::string(int)>& record) {
    fs::create_directories(data / task);
    std::ofstream out(data / task / file);
    for (int i = 0; i < (file == "train.jsonl" ? 6 : 3); ++i) out << record(file == "train.jsonl" ? i : 100 + i) << "\n";
  };
  const auto piqa = [](int i) { return fmt::format(R"({{"goal":"g{0}","sol1":"x{0}","sol2":"y{0}","label":{1}}})", i, i % 2); };
  const auto boolq = [](int i) { return fmt::format(R"({{"question":"q{0}","passage":"p{0}","idx":{0},"label":{1}}})", i, i % 2); };
  const auto hellaswag = [](int i) {
    return fmt::format(R"({{"activity_label":"A{0}","ctx_a":"c{0}.","ctx_b":"","endings":["e{0}","f{0}"],"label":"{1}"}})", i, i % 2);
  };
  for (const char* file : {"validation.jsonl", "train.jsonl"}) {
    write("piqa", file, piqa);
    write("boolq", file, boolq);
    write("hellaswag", file, hellaswag);
  }
  const std::map<std::string, std::function<std::string(int64_t)>> example = {
      {"piqa", [](int64_t i) { return fmt::format("Question: g{}\nAnswer: {}{}\n\n", i, i % 2 ? "y" : "x", i); }},
      {"boolq", [](int64_t i) { return fmt::format("p{0}\nQuestion: q{0}?\nAnswer: {1}\n\n", i, i % 2 ? "yes" : "no"); }},
      {"hellaswag", [](int64_t i) { return fmt::format("A{0}: c{0}. {1}{0}\n\n", i, i % 2 ? "f" : "e"); }}};
  for (const auto& [name, text] : example) {
    SCOPED_TRACE(name);
    const Task task = load_task(name, data, 0, 2);
    ASSERT_EQ(task.docs.size(), 3u);
    ASSERT_EQ(task.fewshot_sources.size(), 1u);
    EXPECT_EQ(task.fewshot_sources[0].filename(), "train.jsonl");
    PythonRandom rnd(1234);
    for (const EvalDoc& doc : task.docs) {
      const auto drawn = rnd.sample(6, 3);
      const std::string expected = text(drawn[0]) + text(drawn[1]);
      EXPECT_EQ(doc.context.substr(0, expected.size()), expected) << doc.context;
      EXPECT_EQ(doc.context.find("\n\n", expected.size()), std::string::npos) << doc.context;  // two examples only
    }
  }
}

TEST(EvalMetrics, AccNormDividesByCharactersNotBytes) {
  Task task;
  task.name = "arc_easy";
  task.reports_acc_norm = true;
  EvalDoc doc;
  // 4 characters in 8 bytes against 6 in 6: per character -4/4 = -1 < -4.8/6 = -0.8 picks
  // choice 1; per byte -4/8 = -0.5 > -0.8 would pick choice 0.
  doc.choices = {"éééé", "abcdef"};
  doc.gold = 1;
  task.docs = {doc};
  DocScore score;
  score.requests.resize(2);
  score.requests[0].loglikelihood = -4.0;
  score.requests[1].loglikelihood = -4.8;
  const auto rows = task_metrics(task, {score});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].metric, "acc");
  EXPECT_EQ(rows[0].value, 0.0);  // raw ll: choice 0
  EXPECT_EQ(rows[1].metric, "acc_norm");
  EXPECT_EQ(rows[1].value, 1.0);  // per character: choice 1
}

// lm-eval's mmlu group: weight_by_size over subjects (a micro-average), pooled stderr.
TEST(EvalMetrics, MmluOverallIsWeightedBySubjectSize) {
  Task task;
  task.name = "mmlu";
  std::vector<DocScore> scores;
  // abstract_algebra (stem): 4 docs, 3 right; formal_logic (humanities): 2 docs, none right.
  const std::vector<std::pair<std::string, bool>> docs = {{"abstract_algebra", true}, {"abstract_algebra", true},
                                                          {"abstract_algebra", true}, {"abstract_algebra", false},
                                                          {"formal_logic", false},     {"formal_logic", false}};
  for (const auto& [subject, right] : docs) {
    EvalDoc doc;
    doc.choices = {"A", "B", "C", "D"};
    doc.gold = right ? 0 : 1;
    doc.subject = subject;
    task.docs.push_back(doc);
    DocScore score;
    score.requests.resize(4);
    for (auto& r : score.requests) r.loglikelihood = -2;
    score.requests[0].loglikelihood = -1;  // the model always answers A
    scores.push_back(score);
  }
  const auto rows = task_metrics(task, scores);
  std::map<std::string, MetricRow> by_task;
  for (const auto& row : rows) by_task[row.task] = row;
  EXPECT_DOUBLE_EQ(by_task["mmlu"].value, 0.5);  // 3 of 6; the plain mean of subjects is 0.375
  EXPECT_DOUBLE_EQ(by_task["mmlu_stem"].value, 0.75);
  EXPECT_DOUBLE_EQ(by_task["mmlu_humanities"].value, 0.0);
  EXPECT_DOUBLE_EQ(by_task["mmlu_abstract_algebra"].stderr_value, 0.25);  // sqrt(0.25) / 2
  EXPECT_DOUBLE_EQ(by_task["mmlu_formal_logic"].stderr_value, 0.0);
  // pooled: sqrt(((4-1)·0.25²·4 + (2-1)·0²·2) / (6 - 2) / 6) = sqrt(0.03125)
  EXPECT_NEAR(by_task["mmlu"].stderr_value, std::sqrt(0.03125), 1e-15);
  EXPECT_EQ(by_task.count("mmlu_other"), 0u);
}

// Standard errors as lm-eval computes them (metrics.py mean_stderr: sample standard
// deviation with n - 1, over sqrt(n); pooled_sample_stderr for groups), recomputed by Python.
TEST(EvalMetrics, StderrMatchesPython) {
  const std::vector<double> hits = {1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1};
  const std::vector<double> stderrs = {0.125, 0.3, 0.07};
  const std::vector<int64_t> sizes = {13, 4, 57};
  const fs::path script = test::scratch_dir("eval_stderr") / "stderr.py";
  std::ofstream(script) << "import math, statistics\n"
                           "x = " << nlohmann::json(hits).dump() << "\n"
                           "print(repr(statistics.stdev(x) / math.sqrt(len(x))))\n"
                           "s = " << nlohmann::json(stderrs).dump() << "\nn = " << nlohmann::json(sizes).dump() << "\n"
                           "print(repr(math.sqrt(sum((k - 1) * e * e * k for e, k in zip(s, n)) / (sum(n) - len(n)) / sum(n))))\n";
  FILE* pipe = popen(("/usr/bin/python3 '" + script.string() + "'").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char line[128];
  std::vector<double> python;
  while (fgets(line, sizeof line, pipe)) python.push_back(std::stod(line));
  ASSERT_EQ(pclose(pipe), 0);
  ASSERT_EQ(python.size(), 2u);
  EXPECT_NEAR(mean_stderr(hits), python[0], 1e-15);
  EXPECT_NEAR(pooled_stderr(stderrs, sizes), python[1], 1e-15);
  EXPECT_TRUE(std::isnan(mean_stderr({1.0})));  // lm-eval: "N/A" for one sample
}

TaskResult scored(const std::string& task, std::vector<MetricRow> rows, int64_t docs) {
  TaskResult result;
  result.task = task;
  result.docs = docs;
  for (auto& row : rows) row.docs = row.docs ? row.docs : docs;
  result.metrics = std::move(rows);
  return result;
}

TEST(EvalJson, LmEvalResultsLayout) {
  Task arc, lambada, mmlu;
  arc.name = "arc_challenge";
  arc.original_docs = {{"arc_challenge", 1172}};
  arc.num_fewshot = 25;
  lambada.name = "lambada_openai";
  lambada.original_docs = {{"lambada_openai", 5153}};
  mmlu.name = "mmlu";
  mmlu.num_fewshot = 5;
  mmlu.original_docs = {{"mmlu_formal_logic", 126}, {"mmlu_anatomy", 135}};
  const std::vector<TaskResult> results = {
      scored("mmlu",
             {{"mmlu", "acc", 0.4, 0.05, 4},
              {"mmlu_humanities", "acc", 0.5, 0.1, 2},
              {"mmlu_stem", "acc", 0.3, NAN, 2},
              {"mmlu_anatomy", "acc", 0.3, NAN, 2},
              {"mmlu_formal_logic", "acc", 0.5, 0.1, 2}},
             4),
      scored("arc_challenge", {{"arc_challenge", "acc", 0.25, 0.02}, {"arc_challenge", "acc_norm", 0.3, 0.021}}, 100),
      scored("lambada_openai", {{"lambada_openai", "perplexity", 40.5}, {"lambada_openai", "acc", 0.2, 0.04}}, 100)};
  const auto json = lm_eval_results(results, {mmlu, arc, lambada}, {{"model", "crossquant"}}, {{"protocol", "x"}}, false);
  const auto& r = json["results"];
  // Tasks sorted by name, as lm-eval prints them.
  std::vector<std::string> keys;
  for (auto it = r.begin(); it != r.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"arc_challenge", "lambada_openai", "mmlu", "mmlu_humanities",
                                            "mmlu_formal_logic", "mmlu_stem", "mmlu_anatomy"}));
  EXPECT_EQ(r["arc_challenge"]["alias"], "arc_challenge");
  EXPECT_DOUBLE_EQ(r["arc_challenge"]["acc,none"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(r["arc_challenge"]["acc_stderr,none"].get<double>(), 0.02);
  EXPECT_DOUBLE_EQ(r["arc_challenge"]["acc_norm,none"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(r["arc_challenge"]["acc_norm_stderr,none"].get<double>(), 0.021);
  EXPECT_DOUBLE_EQ(r["lambada_openai"]["perplexity,none"].get<double>(), 40.5);
  EXPECT_EQ(r["lambada_openai"]["perplexity_stderr,none"], "N/A");  // not bootstrapped
  EXPECT_EQ(r["mmlu"]["alias"], "mmlu");
  EXPECT_DOUBLE_EQ(r["mmlu"]["acc,none"].get<double>(), 0.4);
  EXPECT_EQ(r["mmlu_humanities"]["alias"], " - humanities");
  EXPECT_EQ(r["mmlu_formal_logic"]["alias"], "  - formal_logic");
  EXPECT_EQ(r["mmlu_stem"]["acc_stderr,none"], "N/A");
  EXPECT_EQ(json["groups"]["mmlu"]["acc,none"], r["mmlu"]["acc,none"]);
  EXPECT_EQ(json["group_subtasks"]["mmlu"], (nlohmann::ordered_json{"mmlu_humanities", "mmlu_stem"}));
  EXPECT_EQ(json["group_subtasks"]["mmlu_stem"], (nlohmann::ordered_json{"mmlu_anatomy"}));
  EXPECT_TRUE(json["group_subtasks"]["arc_challenge"].empty());
  EXPECT_EQ(json["n-samples"]["arc_challenge"]["original"], 1172);
  EXPECT_EQ(json["n-samples"]["arc_challenge"]["effective"], 100);
  EXPECT_EQ(json["n-samples"]["mmlu_anatomy"]["original"], 135);
  EXPECT_EQ(json["n-samples"]["mmlu_anatomy"]["effective"], 2);
  EXPECT_FALSE(json["n-samples"].contains("mmlu"));  // groups have no samples of their own
  EXPECT_EQ(json["n-shot"]["arc_challenge"], 25);
  EXPECT_EQ(json["n-shot"]["mmlu_formal_logic"], 5);
  EXPECT_EQ(json["versions"]["mmlu"], 2);
  EXPECT_EQ(json["versions"]["arc_challenge"], 1.0);
  EXPECT_EQ(json["higher_is_better"]["lambada_openai"]["perplexity"], false);
  EXPECT_EQ(json["higher_is_better"]["arc_challenge"]["acc_norm"], true);
  EXPECT_EQ(json["higher_is_better"]["mmlu"]["acc"], true);
  EXPECT_EQ(json["configs"]["arc_challenge"]["dataset_name"], "ARC-Challenge");
  EXPECT_EQ(json["configs"]["arc_challenge"]["num_fewshot"], 25);
  EXPECT_EQ(json["configs"]["mmlu_formal_logic"]["fewshot_split"], "dev");
  EXPECT_EQ(json["configs"]["mmlu_formal_logic"]["description"],
            "The following are multiple choice questions (with answers) about formal logic.\n\n");
  EXPECT_EQ(json["config"]["model"], "crossquant");
  EXPECT_EQ(json["crossquant"]["protocol"], "x");
  EXPECT_EQ(json["crossquant"]["tasks"]["arc_challenge"]["docs"], 100);
}

}  // namespace
}  // namespace cq
