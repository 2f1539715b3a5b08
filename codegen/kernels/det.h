// ONNX Det: the determinant of each square matrix in a batch, by LU decomposition with partial pivoting in double
// (the product of the pivots, its sign flipped per row exchange), as LAPACK's getrf which numpy and ONNX Runtime
// (Eigen) use. A zero pivot column gives 0; NaN propagates.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace sdflow_kernels {

template <class T>
double determinant(const T* matrix, int64_t m, std::vector<double>& a) {
    a.assign(matrix, matrix + m * m);
    double det = 1.0;
    for (int64_t c = 0; c < m; ++c) {
        int64_t pivot = c;
        for (int64_t r = c + 1; r < m; ++r)
            if (std::fabs(a[r * m + c]) > std::fabs(a[pivot * m + c])) pivot = r;
        if (a[pivot * m + c] == 0.0) return 0.0;
        if (pivot != c) {
            for (int64_t k = 0; k < m; ++k) std::swap(a[pivot * m + k], a[c * m + k]);
            det = -det;
        }
        det *= a[c * m + c];
        for (int64_t r = c + 1; r < m; ++r) {
            const double f = a[r * m + c] / a[c * m + c];
            for (int64_t k = c + 1; k < m; ++k) a[r * m + k] -= f * a[c * m + k];
        }
    }
    return det;
}

// x [batches, m, m] -> y [batches]
template <class T>
void det(const T* x, int64_t batches, int64_t m, T* y) {
#pragma omp parallel
    {
        std::vector<double> scratch;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batches; ++b) y[b] = T(determinant(x + b * m * m, m, scratch));
    }
}

}  // namespace sdflow_kernels
