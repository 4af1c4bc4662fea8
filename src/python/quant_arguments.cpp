#include "python/quant_arguments.h"

#include <algorithm>
#include <vector>

#include "cli/parse_errors.h"
#include "util/error.h"

namespace cq::python {

namespace py = pybind11;

namespace {

std::string keyword_of(const std::string& flag_name) {
  std::string keyword = flag_name;
  std::replace(keyword.begin(), keyword.end(), '-', '_');
  return keyword;
}

std::vector<const CLI::Option*> quant_flags(const CLI::App& parser) {
  return parser.get_options([](const CLI::Option* o) { return o->get_group() == cli::kQuantizationGroup; });
}

// " (did you mean alpha?)" for a near miss, as `cq` suggests flags.
std::string suggestion(const std::string& keyword, const std::vector<const CLI::Option*>& flags) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, keyword.size() / 3) + 1;
  for (const CLI::Option* flag : flags) {
    const std::string candidate = keyword_of(flag->get_single_name());
    const std::size_t distance = cli::edit_distance(keyword, candidate);
    if (distance < best_distance) best = candidate, best_distance = distance;
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

// A value as the command line would spell it; Python's repr of a float round-trips.
std::string command_line_value(const py::handle& value, const std::string& keyword) {
  if (py::isinstance<py::bool_>(value)) fail("{}={}: expects a value, not True/False", keyword, py::repr(value).cast<std::string>());
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::int_>(value) || py::isinstance<py::float_>(value)) return py::repr(value).cast<std::string>();
  fail("{}: expects a string or a number (got {})", keyword, py::str(value.get_type().attr("__name__")).cast<std::string>());
}

}  // namespace

std::unique_ptr<QuantArguments> parse_quant_arguments(const py::kwargs& keywords, const std::string& where,
                                                      const std::string& engine) {
  auto arguments = std::make_unique<QuantArguments>();
  arguments->options.config.engine = engine;
  cli::add_quant_options(arguments->parser, arguments->options);
  const std::vector<const CLI::Option*> flags = quant_flags(arguments->parser);
  std::vector<std::string> command_line;
  for (const auto& [key, value] : keywords) {
    const std::string keyword = key.cast<std::string>();
    const auto flag = std::find_if(flags.begin(), flags.end(),
                                   [&](const CLI::Option* o) { return keyword_of(o->get_single_name()) == keyword; });
    if (flag == flags.end())
      fail("{}: unknown keyword argument '{}'{}", where, keyword, suggestion(keyword, flags));
    if (value.is_none()) continue;
    const std::string name = "--" + (*flag)->get_single_name();
    if ((*flag)->get_expected_max() == 0) {  // a flag: True gives it, False is its default
      if (!py::isinstance<py::bool_>(value)) fail("{}: expects True or False", keyword);
      if (value.cast<bool>()) command_line.push_back(name);
      continue;
    }
    command_line.push_back(name + "=" + command_line_value(value, keyword));
  }
  std::reverse(command_line.begin(), command_line.end());  // CLI11 parses a reversed vector
  arguments->parser.parse(command_line);                   // CLI::ParseError: crossquant.Error
  return arguments;
}

std::string quant_keyword_names() {
  QuantArguments arguments;
  cli::add_quant_options(arguments.parser, arguments.options);
  std::string names;
  for (const CLI::Option* flag : quant_flags(arguments.parser))
    names += (names.empty() ? "" : ", ") + keyword_of(flag->get_single_name());
  return names;
}

}  // namespace cq::python
