#pragma once
// The decoder's FP32 matrix products, all row-major: the linear layers' X·Wᵀ and the
// attention's scaled Q·Kᵀ and P·V. oneDNN splits even tiny GEMMs over threads, and waking
// the second thread costs more than the product (64x8x64: 64 µs on two threads, 4 µs on
// one): products under kSmallProductMacs multiply-adds run on one thread.
#include <cstdint>

namespace cq::kernels {

inline constexpr int64_t kSmallProductMacs = int64_t{1} << 21;

// C[m x n] = alpha · A[m x k] · B[n x k]ᵀ (row strides lda, ldb, ldc). alpha == 1 is
// gemm_f32 (with its streaming GEMV for m <= 4); any other alpha is oneDNN's sgemm, which
// scales inside the product. C is overwritten; nothing happens when m or n is 0.
void matmul_abt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
                int64_t k, float alpha = 1.f);

// C[m x n] = A[m x k] · B[k x n] (row strides lda, ldb, ldc), oneDNN's sgemm.
void matmul_ab(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
               int64_t k);

// C[m x n] = alpha · op(A) · op(B) + beta · C, op = transpose or not (A is k x m when
// transposed, B n x k): the backward passes of calibration (ptq/omniquant_block) need Aᵀ·B
// and accumulation. oneDNN's sgemm.
void matmul_general(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace cq::kernels
