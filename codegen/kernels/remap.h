// Index-driven ops that loop over indices rather than outputs:
// - scatter_elements / scatter_nd: a copy of the data, then the updates in index order (sequential: later
//   duplicates win, or combine by the reduction); negative indices count from the end;
// - top_k_row: TopK of one row by a partial sort of its indices (ties to the smaller index, as ONNX requires).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace sdflow_kernels {

enum class ScatterReduction { none, add, mul, max, min };

template <class T>
inline void scatter_combine(T& target, T update, ScatterReduction reduction) {
  switch (reduction) {
    case ScatterReduction::none: target = update; break;
    case ScatterReduction::add: target += update; break;
    case ScatterReduction::mul: target *= update; break;
    case ScatterReduction::max: target = std::max(target, update); break;
    case ScatterReduction::min: target = std::min(target, update); break;
  }
}

// ScatterElements: y = data (rank <= 8, `shape`), then for every index element (indices of `index_shape`),
// y at its own coordinates with the one on `axis` replaced by the index takes the update.
template <class T, class I>
void scatter_elements(const T* data, const I* indices, const T* updates, T* y, int rank, const int64_t* shape,
                      const int64_t* index_shape, int axis, ScatterReduction reduction) {
  int64_t total = 1, count = 1, strides[8];
  for (int k = rank - 1; k >= 0; --k) strides[k] = total, total *= shape[k];
  for (int k = 0; k < rank; ++k) count *= index_shape[k];
  std::memcpy(y, data, sizeof(T) * total);
  for (int64_t e = 0; e < count; ++e) {
    int64_t rest = e, target = 0;
    for (int k = rank - 1; k >= 0; --k) {
      const int64_t coordinate = rest % index_shape[k];
      rest /= index_shape[k];
      if (k != axis) target += coordinate * strides[k];
    }
    int64_t h = (int64_t)indices[e];
    if (h < 0) h += shape[axis];
    scatter_combine(y[target + h * strides[axis]], updates[e], reduction);
  }
}

// ScatterND: y = data, then each of `count` index tuples of `depth` coordinates selects a slice of `slice`
// elements that takes its row of updates.
template <class T, class I>
void scatter_nd(const T* data, const I* indices, const T* updates, T* y, int rank, const int64_t* shape, int depth,
                int64_t count, ScatterReduction reduction) {
  int64_t total = 1, strides[8];
  for (int k = rank - 1; k >= 0; --k) strides[k] = total, total *= shape[k];
  int64_t slice = 1;
  for (int k = depth; k < rank; ++k) slice *= shape[k];
  std::memcpy(y, data, sizeof(T) * total);
  for (int64_t e = 0; e < count; ++e) {
    int64_t base = 0;
    for (int k = 0; k < depth; ++k) {
      int64_t v = (int64_t)indices[e * depth + k];
      if (v < 0) v += shape[k];
      base += v * strides[k];
    }
    for (int64_t j = 0; j < slice; ++j) scatter_combine(y[base + j], updates[e * slice + j], reduction);
  }
}

// The k largest (or smallest) of n elements `stride` apart, in order, into values and indices (either may be
// null) `out_stride` apart.
template <class T, class V>
void top_k_row(const T* x, int64_t n, int64_t stride, int64_t k, bool largest, V* values, int64_t* indices,
               int64_t out_stride) {
  k = std::min(k, n);
  std::vector<int64_t> order(n);
  for (int64_t j = 0; j < n; ++j) order[j] = j;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    const T va = x[a * stride], vb = x[b * stride];
    return (largest ? va > vb : va < vb) || (va == vb && a < b);
  });
  for (int64_t j = 0; j < k; ++j) {
    if (values) values[j * out_stride] = x[order[j] * stride];
    if (indices) indices[j * out_stride] = order[j];
  }
}

}  // namespace sdflow_kernels
