// Unit test of codegen/kernels/conv.h against conv_reference.h's double-precision convolution: both depthwise
// kernels (rows straight from the image, and over zero-padded planes) on stride 1 and 2, dilation, uneven pads,
// pads wider than the image, channel multipliers, 1-D, batch 2, with no bias, a bias, and a bias plus an epilogue
// that reads every index; the channel-vector form on the cases without a multiplier, and on small planes; and
// max_pool_plane against a plain window loop (-inf padding, NaN in a window).
#include <limits>

#include "conv_reference.h"
#include "pool.h"

using sdflow_kernels::NoEpilogue;

template <class Kernel>
static void depthwise_case(const char* what, Kernel kernel, const ConvGeometry& g) {
  const auto x = random_vector(g.n * g.c * g.h * g.w), w = random_vector(g.m * g.kh * g.kw), b = random_vector(g.m);
  std::vector<double> scale;
  for (int form = 0; form < 3; ++form) {  // no bias, bias, bias + epilogue
    const std::vector<float> bias = form ? b : std::vector<float>{};
    const auto want = reference(x, w, bias, g, form == 2, scale);
    std::vector<float> y(want.size(), NAN);
    if (form == 2)
      kernel(x.data(), w.data(), bias.data(), y.data(), g, TestEpilogue{});
    else
      kernel(x.data(), w.data(), form ? bias.data() : nullptr, y.data(), g, NoEpilogue{});
    CHECK(close(y, want, scale, what, g));
  }
}

static void max_pool_case(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t s, int64_t d, int64_t pt,
                          int64_t pl, int64_t pb, int64_t pr, bool nan) {
  ConvGeometry g = geometry(1, 1, h, w, 1, 1, kh, kw, s, s, d, d, pt, pl, pb, pr);
  auto x = random_vector(h * w);
  for (auto& v : x) v = -std::fabs(v) - 1.0f;  // all below 0: a padding value of 0 would win
  if (nan) x[(h / 2) * w + w / 2] = NAN;
  std::vector<float> y(g.oh * g.ow);
  sdflow_kernels::max_pool_plane(x.data(), y.data(), g);
  for (int64_t oh = 0; oh < g.oh; ++oh)
    for (int64_t ow = 0; ow < g.ow; ++ow) {
      float best = -std::numeric_limits<float>::infinity();
      bool any_nan = false;
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t ih = oh * s - pt + i * d, iw = ow * s - pl + j * d;
          if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
          const float v = x[ih * w + iw];
          any_nan |= v != v;
          best = std::max(best, v);
        }
      const float got = y[oh * g.ow + ow];
      CHECK(any_nan ? got != got : got == best);
    }
}

// average_pool_plane against pool.h's window loop (the same sums in the same order: equal to the bit), counting
// the padding or not, ceil mode's trailing pads, dilation.
static void average_pool_case(int64_t h, int64_t w, int64_t k, int64_t s, int64_t d, int64_t pad, int64_t trailing) {
  ConvGeometry g = geometry(1, 1, h, w, 1, 1, k, k, s, s, d, d, pad, pad, trailing, trailing);
  const auto x = random_vector(h * w);
  for (bool include : {false, true}) {
    std::vector<float> fast(g.oh * g.ow), loop(g.oh * g.ow);
    sdflow_kernels::average_pool_plane(x.data(), fast.data(), g, include);
    const sdflow_kernels::PoolGeometry p{1, h, w, 1, k, k, 1, s, s, 1, d, d, 0, pad, pad, 0, trailing, trailing,
                                         1, g.oh, g.ow, 1, include, 2.0, false};
    sdflow_kernels::pool_plane(x.data(), loop.data(), (int64_t*)nullptr, 0, p);
    CHECK(fast == loop);
  }
}

int main() {
  average_pool_case(8, 8, 2, 2, 1, 0, 0);    // DenseNet's transition: 2x2 stride 2
  average_pool_case(13, 11, 3, 1, 1, 1, 1);  // 3x3 stride 1 pads 1
  average_pool_case(11, 9, 3, 2, 1, 1, 2);   // a trailing pad past the image (ceil mode)
  average_pool_case(12, 12, 3, 1, 2, 2, 2);  // dilation 2
  using namespace sdflow_kernels;
  auto rows = [](auto... a) { conv_depthwise_rows(a...); };
  auto planes = [](auto... a) { conv_depthwise_planes(a...); };
  auto channels = [](auto... a) { conv_depthwise_channels(a...); };
  const ConvGeometry cases[] = {
      geometry(1, 16, 7, 7, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),    // one chunk, 7 of 8 rows
      geometry(2, 4, 23, 37, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),     // stride 2: pairs of loads past the row's end
      geometry(1, 3, 11, 20, 6, 3, 5, 5, 1, 1, 2, 2, 2, 3, 1, 0),     // dilation 2, uneven pads, multiplier 2
      geometry(2, 2, 5, 5, 2, 2, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3),       // whole output rows in the padding
      geometry(1, 5, 1, 30, 5, 5, 1, 3, 1, 1, 1, 1, 0, 1, 0, 1),      // 1-D
      geometry(1, 2, 6, 40, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),      // a 40-wide stride-1 output
      geometry(1, 8, 112, 112, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),   // MobileNet's first depthwise layer
      geometry(1, 3, 9, 10, 3, 3, 3, 3, 2, 1, 1, 1, 0, 1, 2, 1),      // row stride 2, column stride 1
      geometry(2, 40, 2, 2, 40, 40, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2),    // MNASNet's 2x2 planes: taps mostly outside
      geometry(1, 33, 4, 4, 33, 33, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2),    // stride 2, a block of one channel
      geometry(2, 17, 7, 7, 17, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),    // 7x7
  };
  for (const auto& g : cases) {
    depthwise_case("conv_depthwise_rows", rows, g);
    depthwise_case("conv_depthwise_planes", planes, g);
    if (g.m == g.c) depthwise_case("conv_depthwise_channels", channels, g);
  }
  max_pool_case(11, 9, 3, 3, 2, 1, 1, 1, 1, 1, false);
  max_pool_case(11, 9, 2, 3, 2, 1, 0, 1, 2, 1, false);  // ceil mode: a trailing pad past ONNX's
  max_pool_case(11, 9, 3, 3, 1, 2, 2, 2, 2, 2, false);  // dilation 2
  max_pool_case(12, 12, 3, 3, 2, 1, 1, 1, 1, 1, true);
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
