// String-building details of the evaluation tasks that silently change published numbers
// (docs/EVAL.md): HellaSwag's preprocess/capitalize, the trailing-space move and joint
// tokenization of _encode_pair, ARC's numeric labels, BoolQ's string labels, MMLU's CSV
// fields, malformed records, and the metrics' tie and normalisation rules.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "eval/eval_data.h"
#include "eval/harness.h"
#include "eval/loglikelihood.h"
#include "eval/ppl_datasets.h"
#include "eval/task.h"
#include "test_support.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

fs::path write_file(const std::string& dir, const std::string& name, const std::string& text) {
  const fs::path path = test::scratch_dir(dir) / name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

using test::error_of;

// One id per byte, plus "xy" as one merged token (id 1000): enough to see how the context
// and continuation are split.
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens) ids.push_back(bos_id());
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.substr(i, 2) == "xy") {
        ids.push_back(1000);
        ++i;
      } else {
        ids.push_back(static_cast<unsigned char>(text[i]));
      }
    }
    return ids;
  }
  std::string decode(std::span<const int32_t>, bool) const override { return ""; }
  int32_t bos_id() const override { return 1001; }
  int32_t eos_id() const override { return 1002; }
  int64_t vocab_size() const override { return 1003; }
  std::string kind() const override { return "bytes"; }
};

std::vector<int32_t> bytes(std::string_view text) { return ByteTokenizer().encode(text, false); }

TEST(EvalHellaswag, PreprocessOrderOfReplacements) {
  // strip first, then " [title]" -> ". ", then every [..] removed, then one "  " -> " " pass.
  EXPECT_EQ(hellaswag_preprocess("How to bake [title] Mix the flour."), "How to bake. Mix the flour.");
  EXPECT_EQ(hellaswag_preprocess("[title] Add the eggs."), " Add the eggs.");  // leading space survives
  EXPECT_EQ(hellaswag_preprocess("  padded [step] text  "), "padded text");
  EXPECT_EQ(hellaswag_preprocess("a    b"), "a  b");  // one pass only
  EXPECT_EQ(hellaswag_preprocess("[a] [b] c"), " c");
  EXPECT_EQ(hellaswag_preprocess("keep [open\nbracket] x"), "keep [open\nbracket] x");  // '.' stops at \n
  EXPECT_EQ(hellaswag_preprocess("x [header] [title] y"), "x . y");
}

TEST(EvalHellaswag, CapitalizeLowersTheRest) {
  EXPECT_EQ(python_capitalize("the LADY"), "The lady");
  EXPECT_EQ(python_capitalize(""), "");
  EXPECT_EQ(python_capitalize("éCOLE"), "École");
  EXPECT_EQ(python_capitalize("1ST Place"), "1st place");
  EXPECT_EQ(hellaswag_query("Roof shingle removal", "A man is sitting on a roof.", "he"),
            "Roof shingle removal: A man is sitting on a roof. He");
  // WikiHow: ctx_b is empty, the trailing space is stripped.
  EXPECT_EQ(hellaswag_query("Home and Garden", "[header] How to x [title] Do y.", ""),
            "Home and Garden: How to x. Do y.");
}

TEST(EvalEncodePair, TrailingSpaceMovesIntoTheContinuation) {
  const ByteTokenizer tokenizer;
  const EncodedRequest moved = encode_request(tokenizer, "Answer: ", "yes", false);
  EXPECT_EQ(moved.context, bytes("Answer:"));
  EXPECT_EQ(moved.continuation, bytes(" yes"));
  const EncodedRequest tabs = encode_request(tokenizer, "Q \t\n", "a", false);
  EXPECT_EQ(tabs.context, bytes("Q"));
  EXPECT_EQ(tabs.continuation, bytes(" \t\na"));
}

TEST(EvalEncodePair, ContinuationIsTheJointTailNotItsOwnEncoding) {
  const ByteTokenizer tokenizer;
  // "x" + "yz": jointly "xy" merges, so the continuation is whole[len(enc("x")):] = [z].
  const EncodedRequest merged = encode_request(tokenizer, "x", "yz", false);
  EXPECT_EQ(merged.context, bytes("x"));
  EXPECT_EQ(merged.continuation, (std::vector<int32_t>{'z'}));
  // BOS only with add_bos, and then in both encodings.
  const EncodedRequest bos = encode_request(tokenizer, "ab", " c", true);
  EXPECT_EQ(bos.context, (std::vector<int32_t>{1001, 'a', 'b'}));
  EXPECT_EQ(bos.continuation, bytes(" c"));
  // Empty context: [BOS] and the continuation encoded alone.
  const EncodedRequest empty = encode_request(tokenizer, "", "xy", false);
  EXPECT_EQ(empty.context, (std::vector<int32_t>{1001}));
  EXPECT_EQ(empty.continuation, (std::vector<int32_t>{1000}));
}

TEST(EvalArc, NumericLabelsAreLookedUpNotParsed) {
  EXPECT_EQ(arc_gold_index({"1", "2", "3", "4"}, "3"), 2);
  EXPECT_EQ(arc_gold_index({"A", "B", "C", "D", "E"}, "E"), 4);
  EXPECT_EQ(arc_gold_index({"A", "B"}, "1"), -1);
  const fs::path original = write_file(
      "eval_arc", "ARC-Easy-Test.jsonl",
      R"({"id":"q1","question":{"stem":"Which?","choices":[{"text":"one","label":"1"},{"text":"two","label":"2"},{"text":"three","label":"3"}]},"answerKey":"2"})"
      "\n");
  const auto docs = load_arc(original, 0);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].gold, 1);
  EXPECT_EQ(docs[0].context, "Question: Which?\nAnswer:");
  EXPECT_EQ(docs[0].choices, (std::vector<std::string>{"one", "two", "three"}));
  const fs::path hf = write_file(
      "eval_arc_hf", "test.jsonl",
      R"({"id":"q1","question":"Which?","choices":{"text":["one","two"],"label":["A","B"]},"answerKey":"B"})" "\n");
  EXPECT_EQ(load_arc(hf, 0).at(0).gold, 1);
  const fs::path bad = write_file("eval_arc_bad", "test.jsonl",
                                  R"({"question":{"stem":"s","choices":[{"text":"a","label":"A"}]},"answerKey":"A"})"
                                  "\n\n"
                                  R"({"question":{"stem":"s","choices":[{"text":"a","label":"A"}]},"answerKey":"C"})"
                                  "\n");
  EXPECT_NE(error_of([&] { load_arc(bad, 0); }).find("test.jsonl: line 3: answerKey 'C'"), std::string::npos);
}

TEST(EvalBoolq, StringAndBooleanLabels) {
  EXPECT_EQ(boolq_label(nlohmann::json("true")), 1);
  EXPECT_EQ(boolq_label(nlohmann::json("false")), 0);
  EXPECT_EQ(boolq_label(nlohmann::json(true)), 1);
  EXPECT_EQ(boolq_label(nlohmann::json(0)), 0);
  EXPECT_EQ(boolq_label(nlohmann::json("yes")), -1);
  const fs::path file = write_file("eval_boolq", "val.jsonl",
                                   R"({"question":"is it","passage":"Title -- text.","idx":0,"label":"false"})" "\n"
                                   R"({"question":"is it","passage":"P","idx":1,"label":"maybe"})" "\n");
  EXPECT_NE(error_of([&] { load_boolq(file, 0); }).find("val.jsonl: line 2: 'label'"), std::string::npos);
  const auto docs = load_boolq(file, 1);
  EXPECT_EQ(docs.at(0).context, "Title -- text.\nQuestion: is it?\nAnswer:");
  EXPECT_EQ(docs.at(0).gold, 0);
  EXPECT_EQ(docs.at(0).choices, (std::vector<std::string>{"no", "yes"}));
}

TEST(EvalMmlu, CsvQuotedNewlinesAndQuotes) {
  const std::string text =
      "\"What is \"\"x\"\"?\nSecond line\",\"a,1\",b,\"c\nd\",e,B\r\n"
      "plain,1,2,3,4,D\n";
  const auto rows = parse_csv(text, "t.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"What is \"x\"?\nSecond line", "a,1", "b", "c\nd", "e", "B"}));
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[1].line, 4);
  EXPECT_NE(error_of([] { parse_csv("a,\"open\n", "u.csv"); }).find("u.csv: line 1: unterminated"), std::string::npos);
}

TEST(EvalMmlu, FiveShotContextAndMalformedRows) {
  const fs::path dir = test::scratch_dir("eval_mmlu");
  fs::create_directories(dir / "dev");
  fs::create_directories(dir / "test");
  std::string dev;
  for (int i = 0; i < 5; ++i) dev += fmt::format("\" Q{} \",a,b,c,d,{}\n", i, "ABCDA"[i]);
  std::ofstream(dir / "dev" / "high_school_us_history_dev.csv") << dev;
  std::ofstream(dir / "test" / "high_school_us_history_test.csv") << "\"Multi\nline\",w,x,y,z,C\n";
  const auto docs = load_mmlu(dir, 0);
  ASSERT_EQ(docs.size(), 1u);
  std::string expected = "The following are multiple choice questions (with answers) about high school us history.\n\n";
  for (int i = 0; i < 5; ++i)
    expected += fmt::format("Q{}\nA. a\nB. b\nC. c\nD. d\nAnswer: {}\n\n", i, "ABCDA"[i]);
  expected += "Multi\nline\nA. w\nB. x\nC. y\nD. z\nAnswer:";
  EXPECT_EQ(docs[0].context, expected);
  EXPECT_EQ(docs[0].gold, 2);
  EXPECT_EQ(docs[0].subject, "high_school_us_history");
  EXPECT_EQ(mmlu_category("high_school_us_history"), "humanities");
  std::ofstream(dir / "test" / "high_school_us_history_test.csv") << "ok,1,2,3,4,A\n\"two\nlines\",1,2,3,E\n";
  EXPECT_NE(error_of([&] { load_mmlu(dir, 0); }).find("high_school_us_history_test.csv: line 2: 5 CSV fields"),
            std::string::npos);
}

TEST(EvalLambada, ContextAndTarget) {
  const EvalDoc doc = lambada_doc("He said \"hi\" to\nthe  dog");
  EXPECT_EQ(doc.context, "He said \"hi\" to\nthe ");
  EXPECT_EQ(doc.target, " dog");
  const fs::path bad = write_file("eval_lambada", "lambada_test.jsonl", "{\"text\": \"a b\"}\n{\"text\": \"a b\"\n");
  EXPECT_NE(error_of([&] { load_lambada(bad, 0); }).find("lambada_test.jsonl: line 2: not a JSON record"),
            std::string::npos);
}

TEST(EvalPiqa, LabelsFileAlignedByLine) {
  const fs::path dir = test::scratch_dir("eval_piqa");  // fresh on each call: create once
  const fs::path file = dir / "valid.jsonl", labels = dir / "valid-labels.lst", short_labels = dir / "bad-labels.lst";
  std::ofstream(file) << R"({"goal":"g","sol1":"s1","sol2":"s2"})" "\n" R"({"goal":"h","sol1":"t1","sol2":"t2"})" "\n";
  std::ofstream(labels) << "1\n0\n";
  std::ofstream(short_labels) << "1\n2\n";
  const auto docs = load_piqa(file, labels, 0);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].context, "Question: g\nAnswer:");
  EXPECT_EQ(docs[0].gold, 1);
  EXPECT_EQ(docs[1].gold, 0);
  EXPECT_NE(error_of([&] { load_piqa(file, short_labels, 0); }).find("bad-labels.lst: line 2"), std::string::npos);
}

TEST(EvalMetrics, TiesGoToTheLowestIndexAndNormIsPerCharacter) {
  EXPECT_EQ(first_argmax({-1.0, -0.5, -0.5}), 1);
  Task task;
  task.name = "arc_easy";
  task.reports_acc_norm = true;
  EvalDoc doc;
  doc.choices = {"éé", "ab"};  // 2 characters each, 4 and 2 bytes
  doc.gold = 1;
  task.docs = {doc};
  DocScore score;
  score.requests.resize(2);
  score.requests[0].loglikelihood = score.requests[1].loglikelihood = -2.0;
  const auto rows = task_metrics(task, {score});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].value, 0.0);  // tie -> index 0
  EXPECT_EQ(rows[1].value, 0.0);  // -1 vs -1 per character: tie again
  EXPECT_EQ(python_length("éé"), 2);
  EXPECT_NEAR(mean_stderr({1, 0, 1, 1}), std::sqrt(0.25 / 4), 1e-15);
}

TEST(EvalPerplexityData, WikitextRowsJoinLikeTheHfScript) {
  const auto rows = wikitext_rows(" \n = Title = \n \nText line \n");
  EXPECT_EQ(rows, (std::vector<std::string>{"", " = Title = \n", "", "Text line \n"}));
  CQ_NEED_SHARED("data/wikitext2/wiki.test.raw.prefix");
  const fs::path dir = test::shared_dir() / "data" / "wikitext2";
  EXPECT_EQ(wikitext2_eval_string(dir / "wiki.test.raw.prefix"), read_text_file(dir / "wikitext2_test_joined.prefix.txt"));
}

TEST(EvalPerplexityData, C4JoinsDocumentsWithASpace) {
  const fs::path file = write_file("eval_c4", "c4.jsonl", "{\"text\":\"a\\nb\"}\n{\"text\":\"c\"}\n{\"text\":\"d\"}\n");
  EXPECT_EQ(c4_eval_string(file, 2), "a\nb c");
  EXPECT_EQ(c4_eval_string(file), "a\nb c d");
}

TEST(EvalTasks, SharedDataLoads) {
  CQ_NEED_SHARED("data/mmlu/test");
  const fs::path data = test::shared_dir() / "data";
  const std::map<std::string, size_t> expected = {{"lambada_openai", 100}, {"arc_easy", 100}, {"piqa", 100},
                                                  {"hellaswag", 100},      {"boolq", 100},    {"mmlu", 114}};
  for (const auto& [name, count] : expected) EXPECT_EQ(load_task(name, data, 0).docs.size(), count) << name;
  EXPECT_EQ(load_task("hellaswag", data, 0).docs[0].context, "Roof shingle removal: A man is sitting on a roof. He");
  EXPECT_EQ(load_task("mmlu", data, 1).docs.size(), 57u);
  EXPECT_NE(error_of([&] { load_task("nope", data, 0); }).find("unknown task 'nope'"), std::string::npos);
}

// The paper's zero-shot table (`cq eval --compare`): one row per configuration, the headline
// metric of each task (acc_norm for HellaSwag) in percent, and the row's average.
TaskResult result_with(const std::string& task, double acc, double acc_norm) {
  TaskResult result;
  result.task = task;
  result.metrics = {MetricRow{task, "acc", acc}, MetricRow{task, "acc_norm", acc_norm}};
  return result;
}

TEST(EvalComparison, RowsPerConfigurationAndTheMeanOfTheTaskColumns) {
  const std::vector<ComparisonRow> rows = {
      {"fp32", "FP32 (W16A16)", {result_with("arc_easy", 0.5, 0.1), result_with("hellaswag", 0.2, 0.3)}},
      {"w8a8-crossquant", "W8 per-channel / A8 crossquant α=0.15",
       {result_with("arc_easy", 0.45, 0.1), result_with("hellaswag", 0.2, 0.25)}}};
  EXPECT_EQ(headline_metric("hellaswag"), "acc_norm");
  EXPECT_EQ(headline_metric("arc_easy"), "acc");
  EXPECT_DOUBLE_EQ(comparison_average(rows[0]), (0.5 + 0.3) / 2);
  EXPECT_DOUBLE_EQ(comparison_average(rows[1]), (0.45 + 0.25) / 2);
  EXPECT_EQ(format_comparison_table(rows),
            "| Configuration   | Setting                               | arc_easy acc | hellaswag acc_norm | Average |\n"
            "|-----------------|---------------------------------------|-------------:|-------------------:|--------:|\n"
            "| fp32            | FP32 (W16A16)                         |        50.00 |              30.00 |   40.00 |\n"
            "| w8a8-crossquant | W8 per-channel / A8 crossquant α=0.15 |        45.00 |              25.00 |   35.00 |\n");
  const nlohmann::json json = comparison_json(rows);
  EXPECT_EQ(json["tasks"][1]["metric"], "acc_norm");
  EXPECT_EQ(json["rows"][1]["configuration"], "w8a8-crossquant");
  EXPECT_DOUBLE_EQ(json["rows"][1]["values"]["hellaswag"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(json["rows"][1]["average"].get<double>(), 0.35);
}

TEST(EvalComparison, EndToEndOnTinyopt) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/hellaswag");
  const auto model = test::shared_dir() / "models/tinyopt";
  const auto json_path = test::scratch_dir("eval-compare") / "compare.json";
  const auto result = test::run_cq("eval --model '" + model.string() + "' --data-dir '" +
                                   (test::shared_dir() / "data").string() +
                                   "' --tasks arc_easy,hellaswag,boolq --limit 8 --compare fp32,w8a8-per-token,w8a8-crossquant "
                                   "--json '" + json_path.string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* row : {"| fp32 ", "| w8a8-per-token ", "| w8a8-crossquant "})
    EXPECT_NE(result.output.find(row), std::string::npos) << row << "\n" << result.output;
  EXPECT_NE(result.output.find("| Configuration "), std::string::npos) << result.output;
  const nlohmann::json json = nlohmann::json::parse(read_text_file(json_path));
  const nlohmann::json& rows = json["comparison"]["rows"];
  ASSERT_EQ(rows.size(), 3u);
  const std::vector<std::string> names = {"fp32", "w8a8-per-token", "w8a8-crossquant"};
  for (size_t r = 0; r < rows.size(); ++r) {
    EXPECT_EQ(rows[r]["configuration"], names[r]);
    double sum = 0;
    for (const auto& task : json["comparison"]["tasks"]) {
      const std::string name = task["task"], metric = task["metric"];
      const double value = rows[r]["values"][name].get<double>();
      // The column is the task's own metric from that configuration's results.
      EXPECT_DOUBLE_EQ(value, json["configurations"][r]["results"][name][metric + ",none"].get<double>());
      sum += value;
    }
    EXPECT_DOUBLE_EQ(rows[r]["average"].get<double>(), sum / 3);
  }
  // Each configuration is a whole lm-eval results object; cq's settings are under "crossquant".
  for (size_t r = 0; r < names.size(); ++r) {
    const nlohmann::json& configuration = json["configurations"][r];
    EXPECT_EQ(configuration["crossquant"]["configuration"], names[r]);
    for (const char* key : {"results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config"})
      EXPECT_TRUE(configuration.contains(key)) << key;
  }
  EXPECT_EQ(json["configurations"][1]["crossquant"]["quantization"]["activation_method"], "per-token");
  EXPECT_TRUE(json["configurations"][1]["crossquant"]["engine"]["share_context"].get<bool>());
  // dynamic CrossQuant: one tree per request
  EXPECT_FALSE(json["configurations"][2]["crossquant"]["engine"]["share_context"].get<bool>());

  const auto bad = test::run_cq("eval --model '" + model.string() + "' --data-dir /nonexistent --tasks piqa --compare fp32,w8a8-fancy");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("'w8a8-fancy' is not fp32 or <scheme>-<activation>"), std::string::npos) << bad.output;
  const auto both = test::run_cq("eval --model '" + model.string() + "' --data-dir /nonexistent --tasks piqa --compare fp32 --scheme w8a8");
  EXPECT_EQ(both.exit_code, 1) << both.output;
  EXPECT_NE(both.output.find("--scheme is set by each --compare configuration"), std::string::npos) << both.output;
}

}  // namespace
}  // namespace cq
