// Unit test of codegen/kernels/sampling.h against references written from ONNX's definitions: Resize's nearest
// copies against its weighted double-precision passes on the same taps (every nearest and coordinate mode, up- and
// downsampling, two axes), linear and cubic against formulas evaluated directly (half_pixel, align_corners,
// asymmetric; weights summing to 1; a linear ramp reproduced exactly), integer rounding and saturation,
// tf_crop_and_resize's extrapolation; GridSample with an identity grid (every mode reproduces the image), zeros,
// border and reflection padding outside; AffineGrid's identity and a shear against the normalised coordinates.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "sampling.h"

using namespace sdflow_kernels;

static ResizeMode mode(int m, int transform, int nearest = 0, bool exclude = false, double extrapolation = 0.0) {
  return ResizeMode{m, transform, nearest, false, exclude, -0.75, extrapolation};
}

// Nearest: the copy path (resize) against the weighted double path (resize_pass) over 2 axes of [3, 7, 5].
static void nearest_case(int nearest, int transform, int64_t h_out, int64_t w_out) {
  const int64_t h = 7, w = 5;
  const auto x = random_vector(3 * h * w);
  const ResizeMode m = mode(0, transform, nearest);
  const ResizeAxis axes[2] = {{3, h, h_out, w, double(h_out) / h, 0, 1}, {3 * h_out, w, w_out, 1, double(w_out) / w, 0, 1}};
  CHECK(resize_copies(m));
  std::vector<float> y(3 * h_out * w_out);
  resize(x.data(), y.data(), m, axes, 2);
  std::vector<double> mid(3 * h_out * w), want(3 * h_out * w_out);
  resize_pass(x.data(), mid.data(), m, axes[0]);
  resize_pass(mid.data(), want.data(), m, axes[1]);
  for (size_t i = 0; i < want.size(); ++i) CHECK(y[i] == (float)want[i]);
}

// Linear, one axis of length n -> out, against x(j) of the transform evaluated here.
static void linear_case(int transform, int64_t n, int64_t out) {
  const auto x = random_vector(n);
  const ResizeAxis axis{1, n, out, 1, double(out) / n, 0, 1};
  std::vector<float> y(out);
  resize(x.data(), y.data(), mode(1, transform), &axis, 1);
  for (int64_t j = 0; j < out; ++j) {
    double s = transform == 0 ? (j + 0.5) * n / out - 0.5 : transform == 3 ? j * double(n - 1) / (out - 1)
                                                                            : double(j) * n / out;
    s = std::min(std::max(s, 0.0), double(n - 1));
    const int64_t i0 = (int64_t)std::floor(s), i1 = std::min<int64_t>(i0 + 1, n - 1);
    const double want = x[i0] * (1 - (s - i0)) + x[i1] * (s - i0);
    CHECK(std::fabs(y[j] - want) < 1e-6);
  }
}

int main() {
  for (int nearest = 0; nearest < 4; ++nearest)
    for (int transform : {0, 1, 2, 3, 4}) {
      nearest_case(nearest, transform, 14, 3);
      nearest_case(nearest, transform, 4, 11);
    }
  for (int transform : {0, 3, 4}) {
    linear_case(transform, 9, 20);
    linear_case(transform, 20, 7);
  }
  {  // a linear ramp is reproduced exactly by linear and by cubic interpolation inside (align_corners)
    std::vector<float> ramp(10);
    for (int i = 0; i < 10; ++i) ramp[i] = 0.5f * i - 2;
    const ResizeAxis axis{1, 10, 19, 1, 1.9, 0, 1};
    for (int m : {1, 2}) {
      std::vector<float> y(19);
      resize(ramp.data(), y.data(), mode(m, 3), &axis, 1);
      for (int j = 2; j < 17; ++j) CHECK(std::fabs(y[j] - (0.5 * (j * 9.0 / 18) - 2)) < 1e-5);
    }
  }
  {  // cubic of a constant is that constant (weights sum to 1), downsampled with antialias too
    std::vector<float> flat(40, 3.25f), y(13);
    const ResizeAxis axis{1, 40, 13, 1, 13.0 / 40, 0, 1};
    ResizeMode m = mode(2, 0);
    resize(flat.data(), y.data(), m, &axis, 1);
    for (float v : y) CHECK(std::fabs(v - 3.25f) < 1e-5);
    m.antialias = true;
    resize(flat.data(), y.data(), m, &axis, 1);
    for (float v : y) CHECK(std::fabs(v - 3.25f) < 1e-5);
  }
  {  // integers: linear halfway values round to nearest even, cubic overshoot saturates
    const std::vector<uint8_t> x = {0, 255, 0, 255};
    std::vector<uint8_t> y(8);
    const ResizeAxis axis{1, 4, 8, 1, 2.0, 0, 1};
    resize(x.data(), y.data(), mode(2, 0), &axis, 1);
    std::vector<double> exact(8);
    resize_pass(x.data(), exact.data(), mode(2, 0), axis);
    bool saturated = false;
    for (int j = 0; j < 8; ++j) {
      saturated |= exact[j] < -0.5 || exact[j] > 255.5;
      CHECK(y[j] == (uint8_t)std::min(255.0, std::max(0.0, std::nearbyint(exact[j]))));
    }
    CHECK(saturated);
    const std::vector<int32_t> a = {1, 2};
    std::vector<int32_t> b(3);
    const ResizeAxis align{1, 2, 3, 1, 1.5, 0, 1};
    resize(a.data(), b.data(), mode(1, 3), &align, 1);  // 1, 1.5, 2 -> 1, 2 (1.5 to even), 2
    CHECK(b[0] == 1 && b[1] == 2 && b[2] == 2);
    const std::vector<int64_t> big = {(int64_t(1) << 60) + 1};
    std::vector<int64_t> copies(3);
    const ResizeAxis three{1, 1, 3, 1, 3.0, 0, 1};
    resize(big.data(), copies.data(), mode(0, 4), &three, 1);  // nearest copies: no rounding through double
    for (int64_t v : copies) CHECK(v == big[0]);
  }
  {  // tf_crop_and_resize: outside the roi, the extrapolation value
    const std::vector<float> x = {1, 2, 3, 4};
    std::vector<float> y(5);
    const ResizeAxis axis{1, 4, 5, 1, 1.25, -0.5, 1.5};
    resize(x.data(), y.data(), mode(1, 5, 0, false, -7.0), &axis, 1);
    CHECK(y[0] == -7.0f && y[4] == -7.0f && std::fabs(y[2] - 2.5f) < 1e-6);
  }
  {  // GridSample: an align_corners identity grid reproduces the image in every mode
    const int64_t h = 5, w = 6;
    const auto x = random_vector(2 * h * w);
    std::vector<float> grid(h * w * 2), y(2 * h * w);
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) grid[(i * w + j) * 2] = -1 + 2.0f * j / (w - 1), grid[(i * w + j) * 2 + 1] = -1 + 2.0f * i / (h - 1);
    for (int m = 0; m < 3; ++m) {
      const GridSampleGeometry g{2, 1, 2, h * w, {h, w, 1}, m, 0, true};
      grid_sample(x.data(), grid.data(), y.data(), g);
      for (int64_t i = 0; i < 2 * h * w; ++i) CHECK(std::fabs(y[i] - x[i]) < 1e-5);
    }
    // Outside the image: zeros padding gives 0, border the edge pixel, reflection the mirrored one.
    const std::vector<float> far = {3.0f, 0.0f};  // x far right, y at the centre row (h odd: row 2)
    std::vector<float> one(2);
    const float edge = x[2 * w + w - 1];
    GridSampleGeometry g{2, 1, 2, 1, {h, w, 1}, 0, 0, true};
    grid_sample(x.data(), far.data(), one.data(), g);
    CHECK(one[0] == 0.0f);
    g.padding = 1;
    grid_sample(x.data(), far.data(), one.data(), g);
    CHECK(one[0] == edge);
    const std::vector<float> past = {1.0f + 2.0f / (w - 1), 0.0f};  // one pixel past the right edge
    g.padding = 2;
    grid_sample(x.data(), past.data(), one.data(), g);
    CHECK(std::fabs(one[0] - x[2 * w + w - 2]) < 1e-6);
  }
  {  // AffineGrid: identity theta gives the normalised coordinates (x first); a shear mixes them
    const int64_t sizes[2] = {3, 4};
    const std::vector<float> identity = {1, 0, 0, 0, 1, 0}, shear = {1, 0.5f, 0.25f, 0, 1, 0};
    std::vector<float> grid(3 * 4 * 2);
    for (bool align : {false, true}) {
      affine_grid(identity.data(), grid.data(), 1, sizes, 2, align);
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j) {
          const double gx = align ? -1 + 2.0 * j / 3 : (2.0 * j + 1) / 4 - 1;
          const double gy = align ? -1 + 2.0 * i / 2 : (2.0 * i + 1) / 3 - 1;
          CHECK(std::fabs(grid[(i * 4 + j) * 2] - gx) < 1e-6 && std::fabs(grid[(i * 4 + j) * 2 + 1] - gy) < 1e-6);
        }
      std::vector<float> sheared(3 * 4 * 2);
      affine_grid(shear.data(), sheared.data(), 1, sizes, 2, align);
      for (int64_t p = 0; p < 12; ++p)
        CHECK(std::fabs(sheared[p * 2] - (grid[p * 2] + 0.5f * grid[p * 2 + 1] + 0.25f)) < 1e-6);
    }
  }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
