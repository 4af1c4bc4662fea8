// Few-shot contexts as lm-evaluation-harness v0.4's default ContextSampler builds them
// (lm_eval/api/samplers.py, docs/EVAL.md "Few-shot"): one random.Random(1234) per task,
// consumed document after document in evaluation order.
#include <fmt/format.h>

#include "eval/task.h"
#include "util/error.h"
#include "util/python_random.h"

namespace cq {

std::string fewshot_example(const EvalDoc& doc) {
  // Multiple choice: doc_to_target is the gold index, written as doc_to_choice[gold];
  // loglikelihood (lambada): the target string itself (" word", after the " " delimiter).
  const std::string& target = doc.choices.empty() ? doc.target : doc.choices.at(static_cast<size_t>(doc.gold));
  return doc.context + " " + target + "\n\n";
}

void add_fewshot_examples(std::vector<EvalDoc>& docs, const std::vector<EvalDoc>& pool, int64_t num_fewshot,
                          bool draw_one_more, const std::filesystem::path& pool_source, uint64_t seed) {
  if (num_fewshot <= 0) return;
  const int64_t draws = num_fewshot + (draw_one_more ? 1 : 0);
  if (draws > static_cast<int64_t>(pool.size()))
    fail("{}: {} few-shot documents, --num-fewshot {} draws {}", pool_source.string(), pool.size(), num_fewshot, draws);
  PythonRandom rnd(seed);
  for (EvalDoc& doc : docs) {
    std::string prefix;
    int64_t kept = 0;
    for (const int64_t index : rnd.sample(static_cast<int64_t>(pool.size()), draws)) {
      const EvalDoc& example = pool[static_cast<size_t>(index)];
      if (kept == num_fewshot || (!doc.identity.empty() && example.identity == doc.identity)) continue;
      prefix += fewshot_example(example);
      ++kept;
    }
    doc.context = prefix + doc.context;
  }
}

}  // namespace cq
