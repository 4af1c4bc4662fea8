// The `cq` subcommands that only the end-to-end run reaches: tokenize, kernel, bench and
// sampled/quantized generate. Expected values come from the PyTorch reference goldens
// (tests/golden/ppl/: sentencepiece ids, greedy continuation, kernel counts, perplexities).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"
#include "util/text_file.h"

namespace cq {
namespace {

constexpr const char* kTinyStories = "data/tinystories/TinyStories-valid.first100.txt";

nlohmann::json ppl_golden(const std::string& name) {
  return nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/ppl" / (name + ".json")));
}

std::string shared_model(const std::string& name) {
  std::string quoted = "'";
  quoted += (test::shared_dir() / "models" / name).string();
  quoted += "'";
  return quoted;
}

std::string join(const std::vector<int32_t>& ids, const char* separator = " ") {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? separator : "") + std::to_string(ids[i]);
  return out;
}

// The ids after "ids: " in `cq generate --ids` output.
std::vector<int32_t> generated_ids(const std::string& output) {
  const auto at = output.rfind("ids: ");
  std::vector<int32_t> ids;
  if (at == std::string::npos) return ids;
  std::istringstream stream(output.substr(at + 5));
  int32_t id = 0;
  while (stream >> id) ids.push_back(id);
  return ids;
}

TEST(CliTokenize, IdsTextAndJsonAgreeWithSentencePiece) {
  CQ_NEED_SHARED("models/stories260k");
  const auto golden = ppl_golden("greedy_stories260k");
  const auto ids = golden["prompt_ids"].get<std::vector<int32_t>>();  // [1, 403, 407, 261, 378]
  const std::string model = shared_model("stories260k");

  auto result = test::run_cq("tokenize --model " + model + " --prompt 'Once upon a time'");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, join(ids) + "\n");

  result = test::run_cq("tokenize --model " + model + " --prompt 'Once upon a time' --json");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(nlohmann::json::parse(result.output).get<std::vector<int32_t>>(), ids);

  result = test::run_cq("tokenize --model " + model + " --prompt 'Once upon a time' --no-special");
  EXPECT_EQ(result.output, join(std::vector<int32_t>(ids.begin() + 1, ids.end())) + "\n");

  const auto text = test::scratch_dir("cli-tokenize") / "prompt.txt";
  std::ofstream(text) << "Once upon a time";
  result = test::run_cq("tokenize --model " + model + " --text '" + text.string() + "'");
  EXPECT_EQ(result.output, join(ids) + "\n");

  // --decode: ids back to the text, separated by spaces or commas, a JSON array accepted;
  // special tokens shown as the tokenizer names them unless --no-special.
  result = test::run_cq("tokenize --model " + model + " --decode --prompt '" + join(ids) + "'");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "<s> Once upon a time\n");
  result = test::run_cq("tokenize --model " + model + " --decode --no-special --prompt '[" + join(ids, ",") + "]'");
  EXPECT_EQ(result.output, "Once upon a time\n");
  const auto continuation = golden["generated_ids"].get<std::vector<int32_t>>();
  result = test::run_cq("tokenize --model " + model + " --decode --prompt '" + join(continuation) + "'");
  EXPECT_EQ(result.output, golden["generated_text"].get<std::string>() + "\n");

  result = test::run_cq("tokenize --model " + model + " --decode --prompt '403 99999'");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("'99999' is not a token id"), std::string::npos) << result.output;
}

// `cq kernel`: its report (table, JSON, CSV) against the reference's kernel counts.
TEST(CliKernel, ReportMatchesTheReferenceCounts) {
  CQ_NEED_SHARED("models/stories260k");
  CQ_NEED_SHARED(kTinyStories);
  const auto golden = ppl_golden("stories260k_tinystories_256");
  const auto dir = test::scratch_dir("cli-kernel");
  const auto result = test::run_cq("kernel --model " + shared_model("stories260k") + " --text '" +
                                   (test::shared_dir() / kTinyStories).string() + "' --seqlen 256 --scheme w8a8 --alphas 0.15,1 --json '" +
                                   (dir / "k.json").string() + "' --csv '" + (dir / "k.csv").string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("c>=t %"), std::string::npos) << result.output;
  const auto report = nlohmann::json::parse(read_text_file(dir / "k.json"));
  ASSERT_EQ(report["results"].size(), 2u);
  // α = 0.15, and α = 1 (which is per-token exactly).
  for (const auto& [index, key] : {std::pair{0, "w8a8_crossquant_a0.15"}, std::pair{1, "w8a8_crossquant_a1"}}) {
    SCOPED_TRACE(key);
    const auto& entry = report["results"][static_cast<size_t>(index)];
    const auto& expected = golden["settings"][key];
    EXPECT_EQ(entry["windows"].get<int64_t>(), golden["windows"].get<int64_t>());
    EXPECT_NEAR(entry["perplexity"].get<double>(), expected["ppl"].get<double>(), 1e-3 * expected["ppl"].get<double>());
    EXPECT_EQ(entry["total"]["elements"].get<int64_t>(), expected["kernel"]["elements"].get<int64_t>());
    EXPECT_NEAR(entry["total"]["kernel_fraction"].get<double>(), expected["kernel"]["kernel_proportion"].get<double>(), 2e-4);
    EXPECT_NEAR(entry["total"]["column_max_ge_row_max_fraction"].get<double>(), expected["kernel"]["share_c_ge_t"].get<double>(),
                2e-4);
    ASSERT_EQ(entry["layers"].size(), expected["kernel"]["per_layer"].size());
    int64_t elements = 0;
    for (const auto& layer : entry["layers"]) {
      const auto& reference = expected["kernel"]["per_layer"][layer["layer"].get<std::string>()];
      EXPECT_EQ(layer["elements"].get<int64_t>(), reference["elements"].get<int64_t>()) << layer["layer"];
      elements += layer["elements"].get<int64_t>();
    }
    EXPECT_EQ(elements, entry["total"]["elements"].get<int64_t>());
  }
  // CSV: a header, then per setting one line per layer and a total line.
  const std::string csv = read_text_file(dir / "k.csv");
  EXPECT_EQ(csv.rfind("setting,layer,elements,kernel,", 0), 0u) << csv.substr(0, 200);
  EXPECT_EQ(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')), 1 + 2 * (report["results"][0]["layers"].size() + 1));
  const std::string total = ",total," + std::to_string(report["results"][1]["total"]["elements"].get<int64_t>()) + "," +
                            std::to_string(report["results"][1]["total"]["kernel"].get<int64_t>()) + ",";
  EXPECT_NE(csv.find(total), std::string::npos) << total;
}

// `cq bench` runs and reports its fields (speed itself is measured by bench/, not tested).
TEST(CliBench, ReportsPrefillAndDecodeFields) {
  const auto dir = test::synthetic_model("llama-gqa");
  auto result = test::run_cq("bench --model '" + dir.string() + "' --prompt-tokens 16 --gen-tokens 4 --repeats 1 --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(result.output);
  for (const char* key : {"prefill_seconds", "prefill_tokens_per_second", "decode_seconds", "decode_tokens_per_second", "setup_seconds"})
    EXPECT_GT(json.at(key).get<double>(), 0) << key;
  EXPECT_EQ(json["prompt_tokens"], 16);
  EXPECT_EQ(json["gen_tokens"], 4);

  result = test::run_cq("bench --model '" + dir.string() + "' --prompt-tokens 16 --gen-tokens 4 --repeats 1 --scheme w8a8 --act-quant per-token");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("(engine int)"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("prompt processing: 16 tokens"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("generation:        4 tokens"), std::string::npos) << result.output;
}

// Sampling: the same seed gives the same text, another seed another text; a tiny temperature
// is greedy (the reference's continuation).
TEST(CliGenerate, SamplingIsSeededAndTemperatureScaled) {
  CQ_NEED_SHARED("models/stories260k");
  const auto golden = ppl_golden("greedy_stories260k");
  const auto greedy = golden["generated_ids"].get<std::vector<int32_t>>();
  const std::string base = "generate --model " + shared_model("stories260k") + " --prompt 'Once upon a time' -n 32 --ids ";
  auto sampled = [&](const std::string& flags) {
    const auto result = test::run_cq(base + flags);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return generated_ids(result.output);
  };
  const auto first = sampled("--temperature 1 --seed 7");
  ASSERT_EQ(first.size(), 32u);
  EXPECT_EQ(sampled("--temperature 1 --seed 7"), first);
  bool another_differs = false;
  for (const char* seed : {"8", "9", "10"}) another_differs = another_differs || sampled(std::string("--temperature 1 --seed ") + seed) != first;
  EXPECT_TRUE(another_differs);
  EXPECT_NE(first, std::vector<int32_t>(greedy.begin(), greedy.begin() + 32));
  EXPECT_EQ(sampled("--temperature 0.001 --seed 7"), std::vector<int32_t>(greedy.begin(), greedy.begin() + 32));
  EXPECT_EQ(sampled("--temperature 0"), std::vector<int32_t>(greedy.begin(), greedy.begin() + 32));
}

// Quantized generation: the integer engine generates what the simulated one does, and the
// setting is applied (W4A4 changes the greedy text of the FP32 model).
TEST(CliGenerate, QuantizedGenerationRunsTheSetting) {
  CQ_NEED_SHARED("models/stories260k");
  const auto greedy = ppl_golden("greedy_stories260k")["generated_ids"].get<std::vector<int32_t>>();
  const std::string base = "generate --model " + shared_model("stories260k") + " --prompt 'Once upon a time' -n 24 --ids ";
  const auto fake = test::run_cq(base + "--scheme w8a8 --act-quant per-token --engine fake");
  const auto integer = test::run_cq(base + "--scheme w8a8 --act-quant per-token --engine int");
  ASSERT_EQ(fake.exit_code, 0) << fake.output;
  ASSERT_EQ(integer.exit_code, 0) << integer.output;
  EXPECT_NE(integer.output.find("(engine int)"), std::string::npos) << integer.output;
  EXPECT_NE(fake.output.find("(engine fake)"), std::string::npos) << fake.output;
  EXPECT_EQ(generated_ids(fake.output).size(), 24u);
  EXPECT_EQ(generated_ids(integer.output), generated_ids(fake.output));
  const auto w4a4 = test::run_cq(base + "--scheme w4a4 --act-quant per-token");
  ASSERT_EQ(w4a4.exit_code, 0) << w4a4.output;
  EXPECT_NE(generated_ids(w4a4.output), std::vector<int32_t>(greedy.begin(), greedy.begin() + 24));
}

}  // namespace
}  // namespace cq
