// Unit test of codegen/kernels/remap.h: ScatterElements on every axis of a 3-D tensor with negative indices and
// each reduction (later duplicates win for none), ScatterND with full-element and slice updates, and TopK rows
// (largest and smallest, ties to the smaller index, strided, k beyond the row) against a stable sort.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

#include "check.h"
#include "remap.h"

using namespace sdflow_kernels;

int main() {
  const int64_t shape[3] = {2, 3, 4};
  std::vector<float> data(24);
  std::iota(data.begin(), data.end(), 0.0f);
  for (int axis = 0; axis < 3; ++axis) {
    const int64_t index_shape[3] = {2, 2, 2};
    std::vector<int64_t> indices(8);
    for (int e = 0; e < 8; ++e) indices[e] = (e % 2 ? -1 : 0) * 1 + (e == 5 ? 1 : 0);  // 0, -1, 0, -1, 0, 0, ...
    std::vector<float> updates(8);
    for (int e = 0; e < 8; ++e) updates[e] = 100.0f + e;
    for (auto reduction : {ScatterReduction::none, ScatterReduction::add, ScatterReduction::max}) {
      std::vector<float> y(24), want(data);
      scatter_elements(data.data(), indices.data(), updates.data(), y.data(), 3, shape, index_shape, axis, reduction);
      for (int e = 0; e < 8; ++e) {
        int64_t c[3] = {e / 4, (e / 2) % 2, e % 2};
        int64_t h = indices[e] < 0 ? indices[e] + shape[axis] : indices[e];
        c[axis] = h;
        float& t = want[(c[0] * 3 + c[1]) * 4 + c[2]];
        t = reduction == ScatterReduction::none ? updates[e] : reduction == ScatterReduction::add ? t + updates[e]
                                                                                                   : std::max(t, updates[e]);
      }
      CHECK(y == want);
    }
  }
  {  // ScatterND: depth 3 (elements, a duplicate: the later wins) and depth 1 (rows of 12, with mul)
    const std::vector<int64_t> points = {0, 1, 2, 1, -1, 3, 0, 1, 2};
    const std::vector<float> values = {7, 8, 9};
    std::vector<float> y(24), want(data);
    scatter_nd(data.data(), points.data(), values.data(), y.data(), 3, shape, 3, 3, ScatterReduction::none);
    want[6] = 9, want[23] = 8;
    CHECK(y == want);
    const std::vector<int32_t> rows = {-1};
    std::vector<float> factors(12, 2.0f);
    scatter_nd(data.data(), rows.data(), factors.data(), y.data(), 3, shape, 1, 1, ScatterReduction::mul);
    for (int i = 0; i < 24; ++i) CHECK(y[i] == (i >= 12 ? 2 * data[i] : data[i]));
  }
  {  // TopK: a strided row with ties
    const std::vector<float> x = {3, 0, 1, 0, 3, 0, 2, 0, 1, 0, 5, 0};  // row 3 1 3 2 1 5 at stride 2
    std::vector<float> values(8, -1);
    std::vector<int64_t> indices(8, -1);
    top_k_row(x.data(), 6, 2, 4, true, values.data(), indices.data(), 2);
    CHECK(values[0] == 5 && values[2] == 3 && values[4] == 3 && values[6] == 2);
    CHECK(indices[0] == 5 && indices[2] == 0 && indices[4] == 2 && indices[6] == 3);
    CHECK(values[1] == -1 && indices[1] == -1);  // between the strided outputs: untouched
    top_k_row(x.data(), 6, 2, 9, false, values.data(), (int64_t*)nullptr, 1);  // k beyond the row: all 6
    CHECK(values[0] == 1 && values[1] == 1 && values[2] == 2 && values[3] == 3 && values[5] == 5);
  }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
