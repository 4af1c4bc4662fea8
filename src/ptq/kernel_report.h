#pragma once
// Kernel statistics of a model run, per linear layer and in total, as JSON / table / CSV
// (the paper's Table 1 columns). One place, so every command reports them the same way.
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cq {

class Transformer;

nlohmann::json kernel_report_json(const Transformer& model);
std::string kernel_report_table(const Transformer& model);
std::string kernel_report_csv(const Transformer& model, const std::string& label);

}  // namespace cq
