#include "eval/harness.h"

#include <fmt/format.h>

#include <chrono>
#include <array>
#include <map>

#include "eval/eval_data.h"
#include "util/error.h"
#include "util/progress.h"

namespace cq {

int64_t first_argmax(const std::vector<double>& values) {
  int64_t best = 0;
  for (size_t i = 1; i < values.size(); ++i)
    if (values[i] > values[best]) best = static_cast<int64_t>(i);
  return best;
}

double mean_stderr(const std::vector<double>& values) {
  const double n = static_cast<double>(values.size());
  if (values.size() < 2) return NAN;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= n;
  double var = 0;
  for (double v : values) var += (v - mean) * (v - mean);
  return std::sqrt(var / (n - 1)) / std::sqrt(n);
}

double pooled_stderr(const std::vector<double>& stderrs, const std::vector<int64_t>& sizes) {
  // lm-eval's pooled_sample_stderr (weight_by_size groups).
  double numerator = 0, total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const double n = static_cast<double>(sizes[i]);
    numerator += (n - 1) * stderrs[i] * stderrs[i] * n;
    total += n;
  }
  return std::sqrt(numerator / (total - static_cast<double>(sizes.size())) / total);
}

namespace {

MetricRow accuracy_row(const std::string& task, const std::string& metric, const std::vector<double>& hits) {
  MetricRow row{task, metric};
  double sum = 0;
  for (double h : hits) sum += h;
  row.docs = static_cast<int64_t>(hits.size());
  row.correct = static_cast<int64_t>(sum);
  row.value = sum / static_cast<double>(hits.size());
  row.stderr_value = mean_stderr(hits);
  return row;
}

}  // namespace

std::vector<MetricRow> task_metrics(const Task& task, const std::vector<DocScore>& scores) {
  std::vector<MetricRow> rows;
  std::vector<double> acc, acc_norm;
  if (task.kind == TaskKind::Loglikelihood) {
    double ll_sum = 0;
    for (const auto& doc : scores) {
      acc.push_back(doc.requests.at(0).is_greedy ? 1.0 : 0.0);
      ll_sum += doc.requests.at(0).loglikelihood;
    }
    MetricRow ppl{task.name, "perplexity", std::exp(-ll_sum / static_cast<double>(scores.size()))};
    ppl.docs = static_cast<int64_t>(scores.size());
    rows.push_back(ppl);
    rows.push_back(accuracy_row(task.name, "acc", acc));
    return rows;
  }
  for (size_t d = 0; d < scores.size(); ++d) {
    const EvalDoc& doc = task.docs[d];
    std::vector<double> lls, normalized;
    for (size_t i = 0; i < doc.choices.size(); ++i) {
      lls.push_back(scores[d].requests.at(i).loglikelihood);
      normalized.push_back(lls.back() / static_cast<double>(python_length(doc.choices[i])));
    }
    acc.push_back(first_argmax(lls) == doc.gold ? 1.0 : 0.0);
    acc_norm.push_back(first_argmax(normalized) == doc.gold ? 1.0 : 0.0);
  }
  if (task.name != "mmlu") {
    rows.push_back(accuracy_row(task.name, "acc", acc));
    if (task.reports_acc_norm) rows.push_back(accuracy_row(task.name, "acc_norm", acc_norm));
    return rows;
  }
  // MMLU: subjects, then size-weighted categories and overall (pooled standard errors).
  std::map<std::string, std::vector<double>> by_subject;
  for (size_t d = 0; d < scores.size(); ++d) by_subject[task.docs[d].subject].push_back(acc[d]);
  std::vector<MetricRow> subjects;
  for (const auto& [subject, hits] : by_subject) subjects.push_back(accuracy_row("mmlu_" + subject, "acc", hits));
  const auto group = [&](const std::string& name, const std::string& category) {
    MetricRow row{name, "acc"};
    std::vector<double> stderrs;
    std::vector<int64_t> sizes;
    row.correct = 0;
    for (const auto& subject : subjects) {
      if (!category.empty() && mmlu_category(subject.task.substr(5)) != category) continue;
      row.docs += subject.docs;
      row.correct += subject.correct;
      stderrs.push_back(subject.stderr_value);
      sizes.push_back(subject.docs);
    }
    if (row.docs == 0) return;
    row.value = static_cast<double>(row.correct) / static_cast<double>(row.docs);
    row.stderr_value = pooled_stderr(stderrs, sizes);
    rows.push_back(row);
  };
  group("mmlu", "");
  for (const char* category : {"humanities", "other", "social_sciences", "stem"})
    group(std::string("mmlu_") + category, category);
  rows.insert(rows.end(), subjects.begin(), subjects.end());
  return rows;
}

TaskResult run_task(LoglikelihoodEngine& engine, const Task& task, bool show_progress) {
  TaskResult result;
  result.task = task.name;
  result.docs = static_cast<int64_t>(task.docs.size());
  const EngineStats before = engine.stats();
  const auto start = std::chrono::steady_clock::now();
  std::vector<EncodedQuestion> questions;
  questions.reserve(task.docs.size());
  for (const EvalDoc& doc : task.docs) {
    if (task.kind == TaskKind::Loglikelihood) {
      const std::string target[] = {doc.target};
      questions.push_back(engine.encode(doc.context, target));
    } else {
      std::vector<std::string> continuations;
      for (const auto& choice : doc.choices) continuations.push_back(" " + choice);
      questions.push_back(engine.encode(doc.context, continuations));
    }
  }
  {
    ProgressBar progress(task.name, result.docs, "docs");
    for (auto& requests : engine.score_questions(questions, [&](int64_t done) {
           if (show_progress) progress.advance(done);
         }))
      result.scores.push_back(DocScore{std::move(requests)});
    if (show_progress) progress.finish();
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.stats = engine.stats() - before;
  result.metrics = task_metrics(task, result.scores);
  return result;
}

std::string format_results_table(const std::vector<TaskResult>& results, bool all_subjects) {
  std::vector<std::array<std::string, 5>> cells = {{"Tasks", "Metric", "Value", "", "Stderr"}};
  for (const auto& result : results)
    for (const auto& row : result.metrics) {
      const bool category = row.task == "mmlu_humanities" || row.task == "mmlu_other" ||
                            row.task == "mmlu_social_sciences" || row.task == "mmlu_stem";
      const bool subject = row.task.rfind("mmlu_", 0) == 0 && !category;
      if (subject && !all_subjects) continue;
      const std::string name = row.task.rfind("mmlu_", 0) == 0 ? (subject ? "  - " : " - ") + row.task : row.task;
      cells.push_back({name, row.metric, fmt::format("{:.4f}", row.value), std::isnan(row.stderr_value) ? "" : "±",
                       std::isnan(row.stderr_value) ? "N/A" : fmt::format("{:.4f}", row.stderr_value)});
    }
  std::array<size_t, 5> width{};
  for (const auto& row : cells)
    for (size_t i = 0; i < 5; ++i) width[i] = std::max<size_t>(width[i], static_cast<size_t>(python_length(row[i])));
  std::string out;
  const auto line = [&](const std::array<std::string, 5>& row) {
    out += fmt::format("|{:<{}}|{:<{}}|{:>{}}|{:<{}}|{:>{}}|\n", row[0], width[0], row[1], width[1], row[2], width[2],
                       row[3], width[3], row[4], width[4]);
  };
  line(cells[0]);
  out += fmt::format("|{:-<{}}|{:-<{}}|{:->{}}|{:-<{}}|{:->{}}|\n", "", width[0], "", width[1], "", width[2], "",
                     width[3], "", width[4]);
  for (size_t i = 1; i < cells.size(); ++i) line(cells[i]);
  return out;
}

std::string headline_metric(const std::string& task) {
  return task == "hellaswag" || task == "arc_challenge" ? "acc_norm" : "acc";
}

double headline_value(const TaskResult& result) {
  const std::string metric = headline_metric(result.task);
  for (const MetricRow& row : result.metrics)
    if (row.task == result.task && row.metric == metric) return row.value;
  fail("task {} has no {} metric", result.task, metric);
}

double comparison_average(const ComparisonRow& row) {
  double sum = 0;
  for (const TaskResult& result : row.results) sum += headline_value(result);
  return row.results.empty() ? NAN : sum / static_cast<double>(row.results.size());
}

std::string format_comparison_table(const std::vector<ComparisonRow>& rows) {
  std::vector<std::vector<std::string>> cells = {{"Configuration", "Setting"}};
  if (!rows.empty())
    for (const TaskResult& result : rows.front().results)
      cells[0].push_back(fmt::format("{} {}", result.task, headline_metric(result.task)));
  cells[0].push_back("Average");
  for (const ComparisonRow& row : rows) {
    std::vector<std::string> line = {row.configuration, row.description};
    for (const TaskResult& result : row.results) line.push_back(fmt::format("{:.2f}", 100 * headline_value(result)));
    line.push_back(fmt::format("{:.2f}", 100 * comparison_average(row)));
    cells.push_back(std::move(line));
  }
  std::vector<int64_t> width(cells[0].size());
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], python_length(line[i]));
  std::string out;
  for (size_t r = 0; r < cells.size(); ++r) {
    for (size_t i = 0; i < cells[r].size(); ++i)
      out += i < 2 ? fmt::format("| {:<{}} ", cells[r][i], width[i]) : fmt::format("| {:>{}} ", cells[r][i], width[i]);
    out += "|\n";
    if (r == 0) {
      for (size_t i = 0; i < width.size(); ++i) out += fmt::format("|{:-<{}}{}", "", width[i] + 1, i < 2 ? '-' : ':');
      out += "|\n";
    }
  }
  return out;
}

nlohmann::json comparison_json(const std::vector<ComparisonRow>& rows) {
  nlohmann::json tasks = nlohmann::json::array(), lines = nlohmann::json::array();
  if (!rows.empty())
    for (const TaskResult& result : rows.front().results)
      tasks.push_back({{"task", result.task}, {"metric", headline_metric(result.task)}});
  for (const ComparisonRow& row : rows) {
    nlohmann::json values = nlohmann::json::object();
    for (const TaskResult& result : row.results) values[result.task] = headline_value(result);
    lines.push_back({{"configuration", row.configuration},
                     {"description", row.description},
                     {"values", values},
                     {"average", comparison_average(row)}});
  }
  return {{"tasks", tasks}, {"rows", lines}};
}

nlohmann::json results_json(const TaskResult& result, bool with_requests) {
  nlohmann::json json = {{"task", result.task}, {"docs", result.docs}, {"seconds", result.seconds}};
  nlohmann::json metrics = nlohmann::json::object(), groups = nlohmann::json::object();
  for (const auto& row : result.metrics) {
    nlohmann::json& target = row.task == result.task ? metrics : groups[row.task];
    target[row.metric] = row.value;
    if (!std::isnan(row.stderr_value)) target[row.metric + "_stderr"] = row.stderr_value;
    target["docs"] = row.docs;
    if (row.correct >= 0) target[row.metric == "acc" ? "correct" : "correct_norm"] = row.correct;
  }
  json["metrics"] = metrics;
  if (!groups.empty()) json["subtasks"] = groups;
  json["engine"] = {{"requests", result.stats.requests},
                    {"forward_calls", result.stats.forward_calls},
                    {"positions", result.stats.positions},
                    {"request_tokens", result.stats.request_tokens}};
  if (with_requests) {
    nlohmann::json requests = nlohmann::json::array();
    for (size_t d = 0; d < result.scores.size(); ++d)
      for (size_t i = 0; i < result.scores[d].requests.size(); ++i) {
        const RequestScore& s = result.scores[d].requests[i];
        requests.push_back({{"doc", d}, {"choice", i}, {"context_tokens", s.context_tokens},
                            {"continuation", s.continuation}, {"ll", s.loglikelihood}, {"is_greedy", s.is_greedy}});
      }
    json["requests"] = requests;
  }
  return json;
}

}  // namespace cq
