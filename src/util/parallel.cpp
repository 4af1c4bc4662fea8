#include "util/parallel.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "util/error.h"

#ifdef CQ_HAVE_MPI
#include <mpi.h>
#endif

namespace cq::parallel {
namespace {

#ifdef CQ_HAVE_MPI
bool joined = false;  // MPI_Init was called
#endif
int world_rank_ = 0, world_size_ = 1;
int solo_depth = 0;
std::FILE* diagnostics_ = nullptr;

// The number of processes a launcher started, from the variables Open MPI's mpirun, PMI and
// Slurm's srun set; 0 when none is set (started alone).
int launched_processes() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* value = std::getenv(name)) return std::max(1, std::atoi(value));
  if (std::getenv("PMIX_RANK") || std::getenv("PMI_RANK")) return 1;  // launched; the size comes from MPI
  if (std::getenv("SLURM_PROCID"))
    if (const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS")) return std::max(1, std::atoi(tasks));
  return 0;
}

#ifdef CQ_HAVE_MPI
// Ranks but 0 print nothing: what they would print repeats rank 0's (their errors go to the
// saved stderr).
void silence_output() {
  const int saved = ::dup(STDERR_FILENO);
  if (saved >= 0) diagnostics_ = ::fdopen(saved, "w");
  const int null = ::open("/dev/null", O_WRONLY);
  if (null < 0) return;
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(null, STDOUT_FILENO);
  ::dup2(null, STDERR_FILENO);
  ::close(null);
}
#endif

}  // namespace

bool built_with_mpi() {
#ifdef CQ_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void start(int* argc, char*** argv) {
  const int launched = launched_processes();
#ifdef CQ_HAVE_MPI
  if (launched == 0) return;
  MPI_Init(argc, argv);
  joined = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  if (world_rank_ != 0) silence_output();
#else
  (void)argc;
  (void)argv;
  // Every process would run the whole job and write every output.
  if (launched > 1)
    fail("started as one of {} processes (mpirun/srun), but this cq was built without MPI: every process would run "
         "the whole job; build with Open MPI (libopenmpi-dev, CMake option CQ_MPI=ON) or start one process",
         launched);
#endif
}

int finish(int exit_code) {
#ifdef CQ_HAVE_MPI
  if (joined) {
    if (exit_code != 0 && world_size_ > 1) {
      if (diagnostics_) std::fflush(diagnostics_);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, exit_code);
    }
    MPI_Finalize();
    joined = false;
  }
#endif
  return exit_code;
}

int world_rank() { return world_rank_; }
int world_size() { return world_size_; }
bool writes_outputs() { return world_rank_ == 0; }
std::FILE* diagnostics() { return diagnostics_ ? diagnostics_ : stderr; }

int rank() { return solo_depth > 0 ? 0 : world_rank_; }
int ranks() { return solo_depth > 0 ? 1 : world_size_; }

SoloScope::SoloScope() { ++solo_depth; }
SoloScope::~SoloScope() { --solo_depth; }

Share share_of(int64_t items, int rank_index, int rank_count) {
  const int64_t base = items / rank_count, longer = items % rank_count;
  const int64_t begin = rank_index * base + std::min<int64_t>(rank_index, longer);
  return {begin, begin + base + (rank_index < longer ? 1 : 0)};
}

Share my_share(int64_t items) { return share_of(items, rank(), ranks()); }

std::vector<int> owners_largest_first(std::span<const double> costs, int rank_count) {
  std::vector<size_t> order(costs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<size_t>(std::max(rank_count, 1)), 0.0);
  std::vector<int> owners(costs.size(), 0);
  for (size_t item : order) {
    const auto least = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owners[item] = static_cast<int>(least);
    load[least] += costs[item];
  }
  return owners;
}

#ifdef CQ_HAVE_MPI
namespace {

// Counts and displacements of every rank's contribution, in rank order.
std::vector<int> gather_counts(int mine, std::vector<int>& displacements) {
  std::vector<int> counts(static_cast<size_t>(world_size_));
  MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  displacements.assign(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) displacements[r] = displacements[r - 1] + counts[r - 1];
  return counts;
}

int checked_count(size_t count) {
  if (count > static_cast<size_t>(1) << 30) fail("internal error: {} values to exchange between ranks in one message", count);
  return static_cast<int>(count);
}

}  // namespace
#endif

std::vector<double> gather(std::span<const double> mine) {
  if (ranks() == 1) return {mine.begin(), mine.end()};
#ifdef CQ_HAVE_MPI
  std::vector<int> displacements;
  const std::vector<int> counts = gather_counts(checked_count(mine.size()), displacements);
  std::vector<double> all(static_cast<size_t>(displacements.back() + counts.back()));
  MPI_Allgatherv(mine.data(), counts[static_cast<size_t>(world_rank_)], MPI_DOUBLE, all.data(), counts.data(),
                 displacements.data(), MPI_DOUBLE, MPI_COMM_WORLD);
  return all;
#else
  return {mine.begin(), mine.end()};
#endif
}

std::vector<std::string> gather(const std::string& mine) {
  if (ranks() == 1) return {mine};
#ifdef CQ_HAVE_MPI
  std::vector<int> displacements;
  const std::vector<int> counts = gather_counts(checked_count(mine.size()), displacements);
  std::string all(static_cast<size_t>(displacements.back() + counts.back()), '\0');
  MPI_Allgatherv(mine.data(), counts[static_cast<size_t>(world_rank_)], MPI_CHAR, all.data(), counts.data(),
                 displacements.data(), MPI_CHAR, MPI_COMM_WORLD);
  std::vector<std::string> parts;
  for (size_t r = 0; r < counts.size(); ++r)
    parts.push_back(all.substr(static_cast<size_t>(displacements[r]), static_cast<size_t>(counts[r])));
  return parts;
#else
  return {mine};
#endif
}

void sum(std::span<int64_t> values) {
  if (ranks() == 1 || values.empty()) return;
#ifdef CQ_HAVE_MPI
  MPI_Allreduce(MPI_IN_PLACE, values.data(), checked_count(values.size()), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
#endif
}

void max(std::span<float> values) {
  if (ranks() == 1 || values.empty()) return;
#ifdef CQ_HAVE_MPI
  MPI_Allreduce(MPI_IN_PLACE, values.data(), checked_count(values.size()), MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
#endif
}

void max(std::span<int64_t> values) {
  if (ranks() == 1 || values.empty()) return;
#ifdef CQ_HAVE_MPI
  MPI_Allreduce(MPI_IN_PLACE, values.data(), checked_count(values.size()), MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
#endif
}

void sum(std::span<double> values) {
  if (ranks() == 1 || values.empty()) return;
#ifdef CQ_HAVE_MPI
  MPI_Allreduce(MPI_IN_PLACE, values.data(), checked_count(values.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
}

}  // namespace cq::parallel
