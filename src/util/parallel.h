#pragma once
// Work shared by the ranks of an MPI job (`mpirun -np N cq ...`, `srun cq ...`; docs/CLUSTER.md).
// The rest of the library asks only "which items are mine" and "combine these values"; it
// never sees MPI. Without MPI (built without Open MPI, or started as one process) every call
// is the one-process answer: the whole range is this rank's, a gather returns its input.
//
// Bit-identity: shares are contiguous and gathered in rank order, so a result assembled
// from every rank's share lists the same values in the same order as one process, and
// the caller sums them in that fixed order. Integer sums and maxima are exact in any order.
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace cq::parallel {

// Joins the job when launched by mpirun/srun (MPI_Init); a process started alone stays
// alone and never initializes MPI. Ranks other than 0 get stdout and stderr on /dev/null
// (errors still reach the real stderr through diagnostics()). Call once, first in main.
void start(int* argc, char*** argv);
// Ends the job: exit code 0 finalizes; a non-zero code in a job of several ranks aborts
// every rank (MPI_Abort), so a rank that fails takes the job down within seconds. Returns
// the exit code for main when it returns at all.
int finish(int exit_code);

bool built_with_mpi();
int world_rank();
int world_size();
// Only rank 0 writes outputs (files, stdout); the writers of util/ and io/ ask this.
bool writes_outputs();
// Where errors go: the process's real stderr, also on ranks whose stderr was silenced.
std::FILE* diagnostics();

// The ranks that share the current work: the world, or this rank alone inside a SoloScope.
int rank();
int ranks();

// Inside this scope the rank works alone (rank 0 of 1): `cq sweep` runs whole grid cells
// on one rank each, and the perplexity inside a cell must not wait for the other ranks.
class SoloScope {
 public:
  SoloScope();
  ~SoloScope();
  SoloScope(const SoloScope&) = delete;
  SoloScope& operator=(const SoloScope&) = delete;
};

// A contiguous run of item indices [begin, end).
struct Share {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
// Rank r's share of `items`: contiguous, in rank order, the first items % ranks ranks one longer.
Share share_of(int64_t items, int rank, int ranks);
Share my_share(int64_t items);

// Whole items of unequal cost (cq sweep's grid cells) over the ranks: largest first, each to
// the rank with the least cost so far (the lowest rank on ties). Returns each item's rank;
// the same on every rank.
std::vector<int> owners_largest_first(std::span<const double> costs, int ranks);

// Every rank's values concatenated in rank order, on every rank (counts may differ).
std::vector<double> gather(std::span<const double> mine);
std::vector<std::string> gather(const std::string& mine);
// Element-wise over the ranks, in place on every rank.
void sum(std::span<int64_t> values);
void max(std::span<float> values);
void max(std::span<int64_t> values);
// Double sums in an order the MPI library picks: not bit-stable across rank counts; only
// for values nothing downstream reads bit-exactly.
void sum(std::span<double> values);

}  // namespace cq::parallel
