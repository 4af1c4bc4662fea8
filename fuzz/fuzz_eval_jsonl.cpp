// Fuzz target: the evaluation data readers of JSONL files (src/eval/eval_data.h, task.h,
// ppl_datasets.h). Input: one selector byte, then the file. The selector picks the reader:
// read_jsonl, lambada, arc, hellaswag, boolq, piqa (file + labels = same bytes),
// WikiText-2 (JSONL rows), C4.
#include "eval/eval_data.h"
#include "eval/ppl_datasets.h"
#include "eval/task.h"
#include "fuzz_common.h"

CQ_FUZZ_TARGET(eval_jsonl) {
  if (input.empty()) return;
  const unsigned selector = static_cast<unsigned char>(input[0]) % 8;
  input.remove_prefix(1);
  const auto dir = fresh_dir();
  const auto file = dir / "data.jsonl";
  write_file(file, input);
  expect_only_cq_errors([&] {
    switch (selector) {
      case 0:
        for (const auto& record : read_jsonl(file, 0))
          if (record.value.contains("text")) (void)json_string(record, file, "text");
        break;
      case 1: (void)load_lambada(file, 0); break;
      case 2: (void)load_arc(file, 0); break;
      case 3: (void)load_hellaswag(file, 0); break;
      case 4: (void)load_boolq(file, 0); break;
      case 5: (void)load_piqa(file, file, 0); break;
      case 6: (void)wikitext2_eval_string(file); break;
      default: (void)c4_eval_string(file, 8); break;
    }
  });
}
