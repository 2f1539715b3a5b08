// Unit test of codegen/kernels/gemm.h against a plain triple loop in double: every micro-kernel height, panel
// tails, k slices (k = 0, below and above KC), transposed and row-major B, alpha, accumulate, bias, the packed,
// per-call-packed and batched entry points, with and without OpenMP threads.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "gemm.h"

namespace g = sdflow_kernels::gemm;

// C (m x n, ldc) expected from a (lda), b (k x n row-major with ldb, or its n x k transpose), and C's old values.
static std::vector<double> reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                                     int64_t ldb, bool trans_b, const std::vector<float>& c_old, int64_t ldc,
                                     const g::Epilogue& e) {
  std::vector<double> c(m * ldc);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p) sum += double(a[i * lda + p]) * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      sum = sum * e.alpha + (e.bias ? e.bias[j] : 0.0);
      c[i * ldc + j] = e.accumulate ? c_old[i * ldc + j] + sum : sum;
    }
  return c;
}

static bool close(const std::vector<float>& got, const std::vector<double>& want, int64_t m, int64_t n, int64_t ldc,
                  int64_t k, const std::vector<float>& c_old) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const int64_t at = i * ldc + j;
      if (j >= n) {  // columns past n (ldc > n) are not written
        if (got[at] != c_old[at]) return false;
        continue;
      }
      if (std::fabs(got[at] - want[at]) > 1e-5 * (k + 4)) {
        std::printf("  C[%ld][%ld] = %g, expected %g (m %ld, n %ld, k %ld)\n", long(i), long(j), got[at], want[at],
                    long(m), long(n), long(k));
        return false;
      }
    }
  }
  return true;
}

static void one_case(int64_t m, int64_t n, int64_t k, bool trans_b, float alpha, bool accumulate, bool bias) {
  const int64_t lda = k + 3, ldb = (trans_b ? k : n) + 5, ldc = n + 2;
  const auto a = random_vector(m * lda), b = random_vector((trans_b ? n : k) * ldb), c_old = random_vector(m * ldc);
  const auto bias_values = random_vector(n);
  const g::Epilogue e{alpha, accumulate, bias ? bias_values.data() : nullptr};
  const auto want = reference(m, n, k, a.data(), lda, b.data(), ldb, trans_b, c_old, ldc, e);

  std::vector<float> packed(g::packed_size(k, n) + 1);
  g::pack_b(b.data(), ldb, trans_b, k, n, packed.data());
  auto c = c_old;
  g::gemm_packed(m, n, k, a.data(), lda, packed.data(), c.data(), ldc, e);
  CHECK(close(c, want, m, n, ldc, k, c_old));

  c = c_old;
  g::gemm(m, n, k, a.data(), lda, b.data(), ldb, trans_b, c.data(), ldc, e);
  CHECK(close(c, want, m, n, ldc, k, c_old));

  c = c_old;
  g::gemm_serial(m, n, k, a.data(), lda, b.data(), ldb, trans_b, c.data(), ldc, e);
  CHECK(close(c, want, m, n, ldc, k, c_old));
}

static void batched_case(int64_t batch, int64_t m, int64_t n, int64_t k, bool trans_b) {
  // A is broadcast over pairs of items (item t reads A block t / 2), as MatMul's batch broadcasting does.
  const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  const auto a = random_vector(((batch + 1) / 2) * m * k), b = random_vector(batch * b_rows * b_cols);
  const std::vector<float> c_old(batch * m * n, 0.0f);
  std::vector<float> c(batch * m * n, 0.0f);
  g::gemm_batched(batch, m, n, k, a.data(), k, b.data(), b_cols, trans_b, c.data(), n,
                  [&](int64_t t, int64_t& ao, int64_t& bo, int64_t& co) {
                    ao = (t / 2) * m * k, bo = t * b_rows * b_cols, co = t * m * n;
                  });
  for (int64_t t = 0; t < batch; ++t) {
    const std::vector<float> old(m * n, 0.0f);
    const auto want = reference(m, n, k, a.data() + (t / 2) * m * k, k, b.data() + t * b_rows * b_cols, b_cols,
                                trans_b, old, n, g::Epilogue{1.0f, false, nullptr});
    const std::vector<float> got(c.begin() + t * m * n, c.begin() + (t + 1) * m * n);
    CHECK(close(got, want, m, n, n, k, old));
  }
}

int main() {
  for (int64_t m : {1, 2, 3, 5, 7, 8, 9, 16, 17, 64, 65, 130})
    for (int64_t n : {1, 15, 16, 17, 31, 32, 33, 70})
      for (int64_t k : {0, 1, 7, 64, 385, 800}) {
        if (m * n * k > 3000000) continue;
        one_case(m, n, k, (m + n) % 2 == 0, 1.0f, false, false);
        one_case(m, n, k, (m + n) % 2 == 1, 0.5f, true, true);
      }
  one_case(200, 300, 500, false, 1.0f, true, false);
  one_case(3, 1000, 40, true, -2.0f, false, true);
  // One row over many panels (gemm_packed's GEMV: tasks of 4 panels, the rest one by one, a partial last panel)
  one_case(1, 300, 500, false, 1.0f, false, false);
  one_case(1, 300, 500, true, 0.5f, true, true);
  one_case(1, 128, 1, false, -1.0f, true, true);
  for (bool trans_b : {false, true}) {
    batched_case(12, 17, 33, 64, trans_b);
    batched_case(1, 40, 20, 10, trans_b);
    batched_case(3, 1, 50, 70, trans_b);
  }
  {  // gemm_loops (integer and 16-bit types): every transposition, alpha and beta; with beta 0, C is not read
    const int64_t m = 3, n = 4, k = 5;
    std::vector<int32_t> a(m * k), b(k * n);
    for (int64_t i = 0; i < m * k; ++i) a[i] = int32_t(i % 7) - 3;
    for (int64_t i = 0; i < k * n; ++i) b[i] = int32_t(i % 5) - 2;
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        std::vector<int32_t> at(a), bt(b);  // the transposes, laid out as the flags say
        for (int64_t i = 0; i < m; ++i)
          for (int64_t p = 0; p < k; ++p) at[ta ? p * m + i : i * k + p] = a[i * k + p];
        for (int64_t p = 0; p < k; ++p)
          for (int64_t j = 0; j < n; ++j) bt[tb ? j * k + p : p * n + j] = b[p * n + j];
        std::vector<int32_t> c(m * n, 5);
        g::gemm_loops<int32_t, int32_t>(ta, tb, m, n, k, 2, at.data(), ta ? m : k, bt.data(), tb ? k : n, 3, c.data(), n);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            int32_t sum = 0;
            for (int64_t p = 0; p < k; ++p) sum += a[i * k + p] * b[p * n + j];
            CHECK(c[i * n + j] == 2 * sum + 15);
          }
      }
    std::vector<float> fa(m * k, 1.0f), fb(k * n, 2.0f), fc(m * n, NAN);
    g::gemm_loops<float, float>(false, false, m, n, k, 1.0f, fa.data(), k, fb.data(), n, 0.0f, fc.data(), n);
    for (float v : fc) CHECK(v == 10.0f);
    std::vector<float> bias = {1, 2, 3, 4}, y(m * n);  // fill_scaled: C broadcast along rows
    g::fill_scaled(y.data(), m, n, bias.data(), 1, n, 0.5f);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) CHECK(y[i * n + j] == 0.5f * bias[j]);
    const std::vector<float> column = {1, 2, 3};
    g::fill_scaled(y.data(), m, n, column.data(), m, 1, 2.0f);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) CHECK(y[i * n + j] == 2.0f * column[i]);
  }
  std::printf("%s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
