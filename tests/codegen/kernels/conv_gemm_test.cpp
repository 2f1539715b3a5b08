// Unit test of codegen/kernels/conv_gemm.h (im2col + BLAS) against conv_reference.h: one group and several, 1x1
// (the input read as the matrix) and strided 1x1, 3x3 with pads, dilation, 1-D, batch 2, layers deep enough that
// the output channels are split among the threads (7x7 images), with no bias, a bias, and a bias plus an epilogue
// that reads every index.
// libraries: openblas
#include "conv_gemm.h"
#include "conv_reference.h"

using sdflow_kernels::NoEpilogue;

static void one_case(const ConvGeometry& g) {
  const int64_t taps = (g.c / g.groups) * g.kh * g.kw;
  const auto x = random_vector(g.n * g.c * g.h * g.w), w = random_vector(g.m * taps), b = random_vector(g.m);
  std::vector<double> scale;
  for (int form = 0; form < 3; ++form) {
    const std::vector<float> bias = form ? b : std::vector<float>{};
    const auto want = reference(x, w, bias, g, form == 2, scale);
    std::vector<float> y(want.size(), NAN);
    if (form == 2)
      sdflow_kernels::conv_gemm(x.data(), w.data(), bias.data(), y.data(), g, TestEpilogue{});
    else
      sdflow_kernels::conv_gemm(x.data(), w.data(), form ? bias.data() : nullptr, y.data(), g, NoEpilogue{});
    CHECK(close(y, want, scale, "conv_gemm", g));
  }
}

int main() {
  one_case(geometry(1, 8, 10, 12, 16, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));    // pointwise
  one_case(geometry(2, 8, 10, 12, 16, 1, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0));    // strided 1x1
  one_case(geometry(1, 3, 33, 31, 10, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));    // 3x3, more rows than a tile
  one_case(geometry(2, 6, 14, 9, 12, 3, 3, 3, 2, 1, 2, 1, 2, 0, 1, 1));     // groups, dilation, uneven pads
  one_case(geometry(1, 64, 7, 7, 40, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));     // deep: channels split
  one_case(geometry(1, 4, 1, 50, 6, 2, 1, 5, 1, 2, 1, 1, 0, 2, 0, 2));      // 1-D, grouped, strided
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
