// crossquant.methods(), fake_quantize(), quantize() and kernel_stats() on one matrix: every
// row of the method table (quant/method_table.cpp), its options read from the row.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>

#include "python/bindings.h"
#include "python/python_support.h"
#include "quant/method_table.h"
#include "quant/quantizer.h"
#include "util/error.h"

namespace cq::python {

namespace {

// The keyword of each option a method may read (QuantOption bits), as the CLI names it.
struct OptionKeyword {
  QuantOption option;
  const char* keyword;
};
constexpr std::array kOptionKeywords{
    OptionKeyword{kOptionAlpha, "alpha"},
    OptionKeyword{kOptionGroupSize, "group_size"},
    OptionKeyword{kOptionAsymmetric, "asymmetric"},
    OptionKeyword{kOptionKernelTarget, "kernel_target"},
    OptionKeyword{kOptionStaticColumnAbsmax, "column_absmax"},
};

std::string methods_reading(QuantOption option) {
  std::string names;
  for (const QuantMethod& method : quant_methods())
    if (method.reads(option)) names += (names.empty() ? "" : ", ") + std::string(method.name);
  return names;
}

// What the keywords of one call give (std::nullopt: not given).
struct QuantizerArguments {
  std::string method;
  int bits = 8;
  std::optional<double> alpha;
  std::optional<int64_t> group_size;
  std::optional<bool> asymmetric;
  std::optional<double> kernel_target;
  std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> column_absmax;
};

// The spec a call describes; an option the method does not read is an error (it would
// change nothing), named with the methods that do read it.
QuantizerSpec make_spec(const QuantizerArguments& a, int64_t columns) {
  const QuantMethod* method = find_quant_method(a.method);
  QuantizerSpec spec;
  spec.method = a.method;
  spec.bits = a.bits;
  if (method == nullptr) (void)make_quantizer(spec);  // throws cq's "unknown quantization method" error
  const std::array given{a.alpha.has_value(), a.group_size.has_value(), a.asymmetric.has_value(),
                         a.kernel_target.has_value(), a.column_absmax.has_value()};
  for (size_t i = 0; i < kOptionKeywords.size(); ++i)
    if (given[i] && !method->reads(kOptionKeywords[i].option))
      fail("method '{}' does not read {} (it applies to {})", a.method, kOptionKeywords[i].keyword,
           methods_reading(kOptionKeywords[i].option));
  if (a.alpha) spec.alpha = *a.alpha;
  if (a.group_size) spec.group_size = *a.group_size;
  if (a.asymmetric) spec.asymmetric = *a.asymmetric;
  if (a.kernel_target) spec.kernel_target = *a.kernel_target;
  if (a.column_absmax) {
    const auto& absmax = *a.column_absmax;
    if (absmax.size() != columns)
      fail("column_absmax has {} values, the matrix {} columns", absmax.size(), columns);
    spec.static_column_absmax.assign(absmax.data(), absmax.data() + absmax.size());
  }
  return spec;
}

// The matrix a call reads: a 2-D float32 array whose rows are contiguous is used where it
// is (any row stride, as a slice of a larger matrix; a PyTorch CPU tensor through its
// .numpy() view, which shares the tensor's memory); anything else is converted to a
// C-contiguous float32 copy (`copied` says so).
struct Matrix {
  py::array array;
  bool copied = false;
};

Matrix as_matrix(const py::handle& x) {
  py::object source = py::reinterpret_borrow<py::object>(x);
  if (!py::isinstance<py::array>(source) && py::hasattr(source, "detach") && py::hasattr(source, "numpy"))
    source = source.attr("detach")().attr("numpy")();
  py::array array = py::array::ensure(source);
  if (!array) fail("x must be a NumPy array, a PyTorch CPU tensor or anything numpy.asarray accepts");
  if (array.ndim() != 2) fail("x must be a 2-D matrix (rows x columns), got {} dimension(s)", array.ndim());
  const auto element = static_cast<py::ssize_t>(sizeof(float));
  const bool rows_contiguous = array.dtype().is(py::dtype::of<float>()) && array.strides(1) == element &&
                               array.strides(0) % element == 0 && array.strides(0) >= array.shape(1) * element;
  if (rows_contiguous) return {array, !array.is(source)};
  return {py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(array), true};
}

MatrixView view_of(py::array& array, bool writable) {
  float* data = writable ? static_cast<float*>(array.mutable_data()) : const_cast<float*>(static_cast<const float*>(array.data()));
  return MatrixView{data, array.shape(0), array.shape(1), array.strides(0) / static_cast<py::ssize_t>(sizeof(float))};
}

py::dict stats_dict(const KernelStats& stats) {
  py::dict d;
  d["elements"] = stats.elements;
  d["kernel"] = stats.kernel;
  d["kernel_fraction"] = stats.kernel_fraction();
  d["exact_zeros"] = stats.exact_zeros;
  d["column_max_ge_row_max"] = stats.column_max_ge_row_max;
  d["bound_below_per_token"] = stats.bound_below_per_token;
  d["clipped"] = stats.clipped;
  return d;
}

template <typename T, typename Source>
py::object array_or_none(const std::vector<Source>& values, std::vector<py::ssize_t> shape) {
  if (values.empty()) return py::none();
  py::array_t<T> array(shape);
  std::copy(values.begin(), values.end(), array.mutable_data());
  return array;
}

#define CQ_QUANTIZER_KEYWORDS                                                                             \
  py::arg("method") = "crossquant", py::arg("bits") = 8, py::arg("alpha") = py::none(),                   \
  py::arg("group_size") = py::none(), py::arg("asymmetric") = py::none(), py::arg("kernel_target") = py::none(), \
  py::arg("column_absmax") = py::none()

}  // namespace

void bind_quantizers(py::module_& m) {
  m.def(
      "methods",
      [] {
        py::list rows;
        for (const QuantMethod& method : quant_methods()) {
          py::list options;
          for (const OptionKeyword& option : kOptionKeywords)
            if (method.reads(option.option)) options.append(option.keyword);
          py::dict row;
          row["name"] = std::string(method.name);
          row["summary"] = std::string(method.summary);
          row["weights"] = method.quantizes_weights;
          row["activations"] = method.quantizes_activations;
          row["options"] = options;
          rows.append(row);
        }
        return rows;
      },
      "The quantization methods (cq's method table): name, summary, whether it quantizes weights / activations, "
      "and the keyword options it reads besides bits.");

  m.def(
      "fake_quantize",
      [](const py::handle& x, const std::string& method, int bits, std::optional<double> alpha,
         std::optional<int64_t> group_size, std::optional<bool> asymmetric, std::optional<double> kernel_target,
         std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> column_absmax, bool inplace) {
        const Matrix input = as_matrix(x);
        const QuantizerSpec spec = make_spec({method, bits, alpha, group_size, asymmetric, kernel_target, column_absmax},
                                             input.array.shape(1));
        py::array output = input.array;
        if (inplace) {
          if (input.copied)
            fail("inplace=True needs a float32 matrix with contiguous rows (NumPy array or PyTorch CPU tensor); "
                 "this one would be converted to a copy");
          if (!output.writeable()) fail("inplace=True: the array is read-only");
        } else {
          output = py::array_t<float>({input.array.shape(0), input.array.shape(1)});
          for (py::ssize_t i = 0; i < output.shape(0); ++i)
            std::copy_n(static_cast<const float*>(input.array.data(i, 0)), output.shape(1),
                        static_cast<float*>(output.mutable_data(i, 0)));
        }
        const MatrixView view = view_of(output, true);
        KernelStats stats;
        without_gil([&] {
          make_quantizer(spec)->fake_quantize(view, &stats);
          return 0;
        });
        return output;
      },
      py::arg("x"), CQ_QUANTIZER_KEYWORDS, py::arg("inplace") = false,
      "x <- Q(x)·Δ: x rounded to the method's grid and scaled back (float32 rows x columns; a PyTorch CPU tensor "
      "through its .numpy() view). Returns a new array, or x itself, written in place, with inplace=True. Options a method does not "
      "read are errors; see methods().");

  m.def(
      "quantize",
      [](const py::handle& x, const std::string& method, int bits, std::optional<double> alpha,
         std::optional<int64_t> group_size, std::optional<bool> asymmetric, std::optional<double> kernel_target,
         std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> column_absmax) {
        Matrix input = as_matrix(x);
        const QuantizerSpec spec = make_spec({method, bits, alpha, group_size, asymmetric, kernel_target, column_absmax},
                                             input.array.shape(1));
        const MatrixView view = view_of(input.array, false);
        KernelStats stats;
        const QuantizedMatrix q = without_gil([&] { return make_quantizer(spec)->quantize(view, &stats); });
        py::dict result;
        result["method"] = spec.method;
        result["bits"] = q.bits;
        // Symmetric codes fit int8; asymmetric group codes are 0..2^bits-1 (uint8).
        if (q.group_zeros.empty())
          result["codes"] = array_or_none<int8_t>(q.codes, {q.rows, q.cols});
        else
          result["codes"] = array_or_none<uint8_t>(q.codes, {q.rows, q.cols});
        result["row_scales"] = array_or_none<float>(q.row_scales, {static_cast<py::ssize_t>(q.row_scales.size())});
        result["column_factors"] = array_or_none<float>(q.column_factors, {static_cast<py::ssize_t>(q.column_factors.size())});
        const py::ssize_t groups = q.group_size > 0 ? (q.cols + q.group_size - 1) / q.group_size : 0;
        result["group_size"] = q.group_size > 0 ? py::object(py::int_(q.group_size)) : py::none();
        result["group_scales"] = array_or_none<float>(q.group_scales, {q.rows, groups});
        // OmniQuant's per-token-asym zero points are not clamped to the codes (they may be < 0).
        const bool zeros_fit_uint8 = std::all_of(q.group_zeros.begin(), q.group_zeros.end(),
                                                 [](int16_t zero) { return zero >= 0 && zero <= 255; });
        result["group_zeros"] = zeros_fit_uint8 ? array_or_none<uint8_t>(q.group_zeros, {q.rows, groups})
                                                : array_or_none<int16_t>(q.group_zeros, {q.rows, groups});
        result["tensor_scale"] = q.tensor_scale != 0.f ? py::object(py::float_(q.tensor_scale)) : py::none();
        result["dequantized"] = array_or_none<float>(q.dequantized(), {q.rows, q.cols});
        result["stats"] = stats_dict(stats);
        return result;
      },
      py::arg("x"), CQ_QUANTIZER_KEYWORDS,
      "Integer codes and scales of x (not modified): a dict with codes (int8; uint8 for asymmetric groups), "
      "row_scales, column_factors, group_size, group_scales, group_zeros, tensor_scale (absent ones None), "
      "dequantized (x ≈ (codes − zero) · row_scale · column_factor · group_scale) and stats (the kernel).");

  m.def(
      "kernel_stats",
      [](const py::handle& x, const std::string& method, int bits, std::optional<double> alpha,
         std::optional<int64_t> group_size, std::optional<bool> asymmetric, std::optional<double> kernel_target,
         std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> column_absmax) {
        const Matrix input = as_matrix(x);
        const QuantizerSpec spec = make_spec({method, bits, alpha, group_size, asymmetric, kernel_target, column_absmax},
                                             input.array.shape(1));
        // Fake quantization of a copy: every method has it (remove-kernel has no integer codes).
        std::vector<float> copy(static_cast<size_t>(input.array.shape(0) * input.array.shape(1)));
        for (py::ssize_t i = 0; i < input.array.shape(0); ++i)
          std::copy_n(static_cast<const float*>(input.array.data(i, 0)), input.array.shape(1),
                      copy.begin() + i * input.array.shape(1));
        const MatrixView view{copy.data(), input.array.shape(0), input.array.shape(1), input.array.shape(1)};
        KernelStats stats;
        without_gil([&] {
          make_quantizer(spec)->fake_quantize(view, &stats);
          return 0;
        });
        return stats_dict(stats);
      },
      py::arg("x"), CQ_QUANTIZER_KEYWORDS,
      "The quantization kernel of x (SPEC.md): elements, kernel (those rounded to zero), kernel_fraction, "
      "exact_zeros, column_max_ge_row_max, bound_below_per_token, clipped.");
}

}  // namespace cq::python
