// `cq tokenize`: token ids of a text (or text of ids with --decode), from the tokenizer
// files of a model directory alone (no weights needed).
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq::cli {

void add_tokenize_command(CLI::App& app) {
  struct Options {
    std::string model, text, prompt;
    bool json = false, decode = false, no_special = false;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand("tokenize", "print token ids (or decode ids with --decode)");
  command->add_option("--model", options->model, "model directory (only its tokenizer files are read)")->required();
  auto* text = command->add_option("--text", options->text, "text file");
  auto* prompt = command->add_option("--prompt", options->prompt, "text given inline (with --decode: ids separated by spaces or commas)");
  text->excludes(prompt);
  command->add_flag("--json", options->json, "print a JSON array");
  command->add_flag("--decode", options->decode, "decode ids back to text");
  command->add_flag("--no-special", options->no_special, "do not add BOS/EOS");
  command->callback([options, text, prompt] {
    if (!text->count() && !prompt->count()) fail("give --text FILE or --prompt TEXT");
    const auto tokenizer = load_tokenizer(options->model);
    const std::string input = text->count() ? read_text_file(options->text) : options->prompt;
    if (options->decode) {
      std::vector<int32_t> ids;
      std::string cleaned = input;
      for (char& ch : cleaned)
        if (ch == ',' || ch == '[' || ch == ']') ch = ' ';
      std::istringstream stream(cleaned);
      std::string item;
      while (stream >> item) {
        try {
          size_t used = 0;
          const long value = std::stol(item, &used);
          if (used != item.size() || value < 0 || value >= tokenizer->vocab_size()) throw std::out_of_range(item);
          ids.push_back(static_cast<int32_t>(value));
        } catch (const std::exception&) {
          fail("--decode: '{}' is not a token id of this vocabulary (size {})", item, tokenizer->vocab_size());
        }
      }
      fmt::print("{}\n", tokenizer->decode(ids, options->no_special));
      return;
    }
    const auto ids = tokenizer->encode(input, !options->no_special);
    if (options->json) fmt::print("{}\n", nlohmann::json(ids).dump());
    else fmt::print("{}\n", fmt::join(ids, " "));
  });
}

}  // namespace cq::cli
