#include "kernels/matmul.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include "kernels/gemm_f32.h"
#include "util/error.h"

namespace cq::kernels {

namespace {

class SingleThreadedIfSmall {
 public:
  explicit SingleThreadedIfSmall(int64_t macs) : saved_(macs < kSmallProductMacs ? omp_get_max_threads() : 0) {
    if (saved_ > 1) omp_set_num_threads(1);
  }
  ~SingleThreadedIfSmall() {
    if (saved_ > 1) omp_set_num_threads(saved_);
  }
  SingleThreadedIfSmall(const SingleThreadedIfSmall&) = delete;
  SingleThreadedIfSmall& operator=(const SingleThreadedIfSmall&) = delete;

 private:
  int saved_;
};

}  // namespace

void matmul_abt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
                int64_t k, float alpha) {
  if (m == 0 || n == 0) return;
  const SingleThreadedIfSmall threads(m * n * k);
  if (alpha == 1.f) return gemm_f32(a, lda, b, ldb, nullptr, c, ldc, m, n, k);
  if (dnnl_sgemm('N', 'T', m, n, k, alpha, a, lda, b, ldb, 0.f, c, ldc) != dnnl_success)
    fail("internal error: dnnl_sgemm failed for {}x{}x{}", m, n, k);
}

void matmul_ab(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
               int64_t k) {
  if (m == 0 || n == 0) return;
  const SingleThreadedIfSmall threads(m * n * k);
  if (dnnl_sgemm('N', 'N', m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc) != dnnl_success)
    fail("internal error: dnnl_sgemm failed for {}x{}x{}", m, n, k);
}

void matmul_general(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const SingleThreadedIfSmall threads(m * n * k);
  if (dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) !=
      dnnl_success)
    fail("internal error: dnnl_sgemm failed for {}x{}x{}", m, n, k);
}

}  // namespace cq::kernels
