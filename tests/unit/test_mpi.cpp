// `mpirun -np N cq ...` (docs/CLUSTER.md): every number and output file of a job of 2 (or 3)
// ranks equals one process's, on the shared models; a rank that fails fails the job with its
// error and leaves no output; a cq built without MPI refuses a multi-rank launch.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "test_support.h"
#include "util/parallel.h"
#include "util/text_file.h"

namespace cq {
namespace {

constexpr const char* kText = "data/wikitext2/wikitext2_test_joined.prefix.txt";

// The cq binary, shell-quoted (appended piecewise: GCC 12 warns falsely (-Wrestrict) on
// "'" + string + "'").
std::string quoted_cq() {
  const char* binary = std::getenv("CQ_BIN");
  std::string quoted = "'";
  quoted += binary && *binary ? binary : std::string(CQ_BINARY_DIR) + "/cq";
  quoted += '\'';
  return quoted;
}

// One OpenMP thread per process in both runs (a thread count can change the last bits of a
// reduction; ranks must not).
const std::string kOneThread = "OMP_NUM_THREADS=1 ";
// Open MPI's own allocations at exit are reported by LeakSanitizer from components it has
// already unloaded (no suppression can name them), so leak checks are off in the ranks under
// make test-sanitize; ASan and UBSan still check them (docs/CLUSTER.md).
const std::string kEnvironment = kOneThread + "ASAN_OPTIONS=detect_leaks=0 ";

std::string mpirun(int ranks) {
  return std::string("mpirun ") + (::geteuid() == 0 ? "--allow-run-as-root " : "") + "--oversubscribe -np " +
         std::to_string(ranks) + " ";
}

test::CommandResult run_alone(const std::string& arguments) {
  return test::run_shell(kOneThread + quoted_cq() + " " + arguments);
}

test::CommandResult run_ranks(int ranks, const std::string& arguments) {
  return test::run_shell(kEnvironment + "timeout 120 " + mpirun(ranks) + quoted_cq() + " " + arguments);
}

#define CQ_NEED_MPI()                                                                                     \
  do {                                                                                                    \
    if (!parallel::built_with_mpi()) GTEST_SKIP() << "built without MPI (CQ_MPI=OFF or no libopenmpi-dev)"; \
    if (test::run_shell("command -v mpirun").exit_code != 0) GTEST_SKIP() << "mpirun not found (openmpi-bin)"; \
  } while (0)

// Shell-quoted, as quoted_cq().
std::string shared(const std::string& relative) {
  std::string quoted = "'";
  quoted += (test::shared_dir() / relative).string();
  quoted += '\'';
  return quoted;
}

// A JSON document without its timings (the only values that may differ between runs).
nlohmann::json without_timings(nlohmann::json json) {
  if (json.is_object()) {
    for (const char* key : {"seconds", "total_evaluation_time_seconds", "date", "start_time", "end_time"}) json.erase(key);
    for (auto& [key, value] : json.items()) value = without_timings(value);
  } else if (json.is_array()) {
    for (auto& value : json) value = without_timings(value);
  }
  return json;
}

void expect_same_json(const std::filesystem::path& alone, const std::filesystem::path& ranks) {
  EXPECT_EQ(without_timings(nlohmann::json::parse(read_text_file(alone))).dump(2),
            without_timings(nlohmann::json::parse(read_text_file(ranks))).dump(2));
}

// The report a run printed: its output from the table's header on, without progress lines (which
// go to stderr; mpirun forwards a rank's stderr and stdout separately, so they may land after
// the table).
std::string report_of(const std::string& output) {
  std::istringstream lines(output.substr(std::min(output.find("setting"), output.size())));
  std::string report;
  for (std::string line; std::getline(lines, line);)
    if (line.find(" eta ") == std::string::npos) report += line + "\n";
  return report;
}

// The leftover files of a run: none but the requested outputs (no temporaries).
int files_in(const std::filesystem::path& dir) {
  int count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++count;
  return count;
}

TEST(Mpi, PerplexityOfCalibratedStaticCrossQuantIsIdentical) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED(kText);
  const auto dir = test::scratch_dir("mpi-ppl");
  // 5 windows in batches of 2 (3 forwards: uneven shares), static CrossQuant calibrated on
  // 5 windows (the maxima reduced over the ranks), the kernel counts in the JSON.
  const std::string arguments = "ppl --model " + shared("models/tinyopt") + " --text " + shared(kText) +
                                " --seqlen 64 --max-windows 5 --batch 2 --scheme w8a8 --static-activations --calib " +
                                shared(kText) + " --calib-samples 5 --calib-seqlen 64 --json ";
  const auto alone = run_alone(arguments + "'" + (dir / "alone.json").string() + "'");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  for (int ranks : {2, 3}) {
    SCOPED_TRACE(ranks);
    const auto path = dir / ("ranks" + std::to_string(ranks) + ".json");
    const auto sharded = run_ranks(ranks, arguments + "'" + path.string() + "'");
    ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
    expect_same_json(dir / "alone.json", path);
    EXPECT_EQ(nlohmann::json::parse(read_text_file(path))["window_nll"].size(), 5u);
  }
  EXPECT_EQ(files_in(dir), 3);
}

// Calibrations that every rank runs whole (GPTQ's Hessians, AWQ's search: docs/CLUSTER.md),
// followed by the shared evaluation: the same perplexity as one process.
TEST(Mpi, GptqAndAwqCalibratedPerplexityIsIdentical) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/stories260k");
  CQ_NEED_SHARED(kText);
  const auto dir = test::scratch_dir("mpi-gptq-awq");
  for (const char* method : {"gptq", "awq"}) {
    SCOPED_TRACE(method);
    const std::string arguments = "ppl --model " + shared("models/stories260k") + " --text " + shared(kText) +
                                  " --seqlen 64 --max-windows 4 --scheme w4a8 --method " + method + " --calib " +
                                  shared(kText) + " --calib-samples 4 --calib-seqlen 64 --json ";
    const auto alone_path = dir / (std::string(method) + "-alone.json");
    const auto ranks_path = dir / (std::string(method) + "-ranks.json");
    const auto alone = run_alone(arguments + "'" + alone_path.string() + "'");
    ASSERT_EQ(alone.exit_code, 0) << alone.output;
    const auto sharded = run_ranks(2, arguments + "'" + ranks_path.string() + "'");
    ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
    expect_same_json(alone_path, ranks_path);
  }
}

TEST(Mpi, KernelReportIsIdentical) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED(kText);
  const auto dir = test::scratch_dir("mpi-kernel");
  const std::string arguments = "kernel --model " + shared("models/tinyopt") + " --text " + shared(kText) +
                                " --seqlen 64 --max-windows 3 --scheme w8a8 --alphas 0.15,1";
  const auto outputs = [&](const std::string& name) {
    return " --json '" + (dir / (name + ".json")).string() + "' --csv '" + (dir / (name + ".csv")).string() + "'";
  };
  const auto alone = run_alone(arguments + outputs("alone"));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto sharded = run_ranks(2, arguments + outputs("ranks"));
  ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
  expect_same_json(dir / "alone.json", dir / "ranks.json");
  EXPECT_EQ(read_text_file(dir / "alone.csv"), read_text_file(dir / "ranks.csv"));
  EXPECT_NE(alone.output.find("setting"), std::string::npos) << alone.output;
  EXPECT_EQ(report_of(alone.output), report_of(sharded.output));
}

TEST(Mpi, EvalRequestsAndMetricsAreIdentical) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/arc_easy");
  CQ_NEED_SHARED("data/lambada_openai");
  const auto dir = test::scratch_dir("mpi-eval");
  // Forwards of 800 positions: arc_easy's 12 questions take 8 (several questions in some),
  // lambada's 3; both ranks get some of each.
  const std::string arguments = "eval --model " + shared("models/tinyopt") + " --data-dir " + shared("data") +
                                " --tasks arc_easy,lambada_openai --limit 12 --packed-tokens 800 --scheme w8a8 --requests --json ";
  const auto alone = run_alone(arguments + "'" + (dir / "alone.json").string() + "'");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto sharded = run_ranks(2, arguments + "'" + (dir / "ranks.json").string() + "'");
  ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
  expect_same_json(dir / "alone.json", dir / "ranks.json");
}

TEST(Mpi, SweepRowsAndFilesAreIdentical) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED(kText);
  const auto dir = test::scratch_dir("mpi-sweep");
  const std::string arguments = "sweep --model " + shared("models/tinyopt") + " --text " + shared(kText) +
                                " --seqlen 64 --max-windows 2 --grid 'scheme=w8a8;act=per-token,crossquant;alpha=0.15'";
  const auto outputs = [&](const std::string& name) {
    return " --json '" + (dir / (name + ".json")).string() + "' --csv '" + (dir / (name + ".csv")).string() +
           "' --svg '" + (dir / (name + ".svg")).string() + "'";
  };
  const auto alone = run_alone(arguments + outputs("alone"));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto sharded = run_ranks(2, arguments + outputs("ranks"));
  ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
  expect_same_json(dir / "alone.json", dir / "ranks.json");
  const auto rows = nlohmann::json::parse(read_text_file(dir / "ranks.json"))["rows"];
  ASSERT_EQ(rows.size(), 3u);  // FP32 and the two grid cells, in grid order
  EXPECT_EQ(rows[0]["setting"], "FP32");
  // The CSV and SVG without their timing column / labels.
  const auto without_seconds = [](const std::string& csv) {
    std::string out;
    std::stringstream lines(csv);
    for (std::string line; std::getline(lines, line);) out += line.substr(0, line.rfind(',')) + "\n";
    return out;
  };
  EXPECT_EQ(without_seconds(read_text_file(dir / "alone.csv")), without_seconds(read_text_file(dir / "ranks.csv")));
  EXPECT_TRUE(std::filesystem::file_size(dir / "ranks.svg") > 0);
  EXPECT_EQ(files_in(dir), 6);
}

// Sampled tokens (--sample-windows): each rank samples its share of the windows, the shares are
// gathered, and the cells (one calibrating on sampled windows) spread over the ranks; rotated
// rows keep their rotation through the gather.
TEST(Mpi, SweepOnSampledTokensIsIdentical) {
  CQ_NEED_MPI();
  const auto dir = test::scratch_dir("mpi-sweep-sampled");
  const std::string arguments = "sweep --model '" + test::synthetic_model("opt-outliers").string() +
                                "' --sample-windows 3 --seqlen 48 --calib-samples 3 --calib-seqlen 32 "
                                "--grid 'scheme=w4a4;rotate=hadamard;method=rtn,gptq;act=per-token' --json ";
  const auto alone = run_alone(arguments + "'" + (dir / "alone.json").string() + "'");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto sharded = run_ranks(2, arguments + "'" + (dir / "ranks.json").string() + "'");
  ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
  expect_same_json(dir / "alone.json", dir / "ranks.json");
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir / "ranks.json"))["rows"].size(), 3u);
}

TEST(Mpi, CalibratedQuantizedCheckpointIsIdentical) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED(kText);
  const auto dir = test::scratch_dir("mpi-quantize");
  // SmoothQuant's activation maxima come from 5 calibration windows shared by the ranks.
  const std::string arguments = "quantize --model " + shared("models/tinyopt") + " --method smoothquant --calib " +
                                shared(kText) + " --calib-samples 5 --calib-seqlen 64 --out ";
  const auto alone = run_alone(arguments + "'" + (dir / "alone").string() + "'");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto sharded = run_ranks(2, arguments + "'" + (dir / "ranks").string() + "'");
  ASSERT_EQ(sharded.exit_code, 0) << sharded.output;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "alone")) {
    SCOPED_TRACE(entry.path().filename().string());
    const auto other = dir / "ranks" / entry.path().filename();
    ASSERT_TRUE(std::filesystem::exists(other));
    EXPECT_TRUE(read_text_file(entry.path()) == read_text_file(other));
    ++files;
  }
  EXPECT_GE(files, 2);
  EXPECT_EQ(files_in(dir / "ranks"), files);
}

// Rank 1 is given a text file that does not exist (MPMD launch): the job fails fast with
// rank 1's error, and rank 0 writes nothing.
TEST(Mpi, OneFailingRankFailsTheJobWithoutOutput) {
  CQ_NEED_MPI();
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED(kText);
  const auto dir = test::scratch_dir("mpi-failure");
  const std::string arguments = quoted_cq() + " ppl --model " + shared("models/tinyopt") +
                                " --seqlen 64 --max-windows 4 --json '" + (dir / "out.json").string() + "' --text ";
  const auto start = std::chrono::steady_clock::now();
  const auto result = test::run_shell(kEnvironment + "timeout 60 " + mpirun(1) + arguments + shared(kText) + " : -np 1 " + arguments +
                                      "'" + (dir / "missing.txt").string() + "'");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.exit_code, 124) << "the job hung: " << result.output;
  EXPECT_NE(result.output.find("cq: error (rank 1 of 2): " + (dir / "missing.txt").string()), std::string::npos)
      << result.output;
  EXPECT_LT(seconds, 30) << result.output;
  EXPECT_EQ(files_in(dir), 0) << "no output, no temporary";
}

// Without MPI every process of an mpirun would run the whole job and write every output.
TEST(Mpi, BuildWithoutMpiRefusesAMultiRankLaunch) {
  if (parallel::built_with_mpi()) GTEST_SKIP() << "built with MPI: the refusal is the CQ_MPI=OFF build's (make test-portable)";
  const auto result = test::run_shell("OMPI_COMM_WORLD_SIZE=2 " + quoted_cq() + " info --help");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("cq: error: started as one of 2 processes (mpirun/srun), but this cq was built without MPI"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(test::run_shell(quoted_cq() + " info --help").exit_code, 0);
}

}  // namespace
}  // namespace cq
