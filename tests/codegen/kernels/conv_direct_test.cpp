// Unit test of codegen/kernels/conv_direct.h against conv_reference.h, on weights packed as lowering packs them:
// conv_direct on tiles of every length the register kernels take (1-16, 17-32, 33-48, 49-56 as 48 plus a
// remainder, 57-64 as two halves), stride 2 (phase planes), dilation, uneven pads, 1-D, few taps (blocks
// outermost), output channels not a multiple of 8, batch 2; conv_direct_channels on small images and on 1x1
// convolutions (each plane one row); conv_winograd on odd and even sizes; conv_pointwise_depthwise against the two
// convolutions one after the other. Each with no bias, a bias, and a bias plus an epilogue that reads every index.
#include "conv_direct.h"
#include "conv_reference.h"

using sdflow_kernels::NoEpilogue;

// G g G^T per (output, input) channel pair as [16][ceil(M / 8)][C][8] (conv_direct.winograd_pack).
static Aligned winograd_pack(const std::vector<float>& w, int64_t m, int64_t c) {
  const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  const int64_t blocks = (m + 7) / 8;
  Aligned packed(16 * blocks * c * 8);
  for (int64_t o = 0; o < m; ++o)
    for (int64_t i = 0; i < c; ++i)
      for (int u = 0; u < 4; ++u)
        for (int v = 0; v < 4; ++v) {
          double sum = 0;
          for (int k = 0; k < 3; ++k)
            for (int l = 0; l < 3; ++l) sum += G[u][k] * w[((o * c + i) * 3 + k) * 3 + l] * G[v][l];
          packed[(((u * 4 + v) * blocks + o / 8) * c + i) * 8 + o % 8] = float(sum);
        }
  return packed;
}

enum class Form { direct, channels, winograd };

static void one_case(Form form, const ConvGeometry& g) {
  const int64_t taps = g.c * g.kh * g.kw;
  const auto x = random_vector(g.n * g.c * g.h * g.w), w = random_vector(g.m * taps), b = random_vector(g.m);
  const auto packed = form == Form::winograd ? winograd_pack(w, g.m, g.c)
                                             : pack_blocks(w, g.m, taps, form == Form::channels ? 16 : 8);
  const char* what = form == Form::direct ? "conv_direct" : form == Form::channels ? "conv_direct_channels"
                                                                                   : "conv_winograd";
  std::vector<double> scale;
  for (int variant = 0; variant < 3; ++variant) {
    const std::vector<float> bias = variant ? b : std::vector<float>{};
    const auto want = reference(x, w, bias, g, variant == 2, scale);
    std::vector<float> y(want.size(), NAN);
    const float* bp = variant ? bias.data() : nullptr;
    auto run = [&](const auto& e) {
      if (form == Form::direct) sdflow_kernels::conv_direct(x.data(), packed.data(), bp, y.data(), g, e);
      if (form == Form::channels) sdflow_kernels::conv_direct_channels(x.data(), packed.data(), bp, y.data(), g, e);
      if (form == Form::winograd) sdflow_kernels::conv_winograd(x.data(), packed.data(), bp, y.data(), g, e);
    };
    if (variant == 2) run(TestEpilogue{});
    else run(NoEpilogue{});
    CHECK(close(y, want, scale, what, g));
  }
}

// 1x1 (cx -> g.c, bias1, TestEpilogue) then depthwise (g) fused, against the reference of each in turn.
static void pointwise_depthwise_case(int64_t n, int64_t cx, const ConvGeometry& g) {
  const ConvGeometry g1 = geometry(n, cx, g.h, g.w, g.c, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0);
  const auto x = random_vector(n * cx * g.h * g.w), w1 = random_vector(g.c * cx), b1 = random_vector(g.c);
  const auto w2 = random_vector(g.m * g.kh * g.kw), b2 = random_vector(g.m);
  std::vector<double> scale;
  const auto mid = reference(x, w1, b1, g1, true, scale);
  const std::vector<float> mid_float(mid.begin(), mid.end());
  const auto want = reference(mid_float, w2, b2, g, false, scale);
  const auto packed = pack_blocks(w1, g.c, cx, 8);
  std::vector<float> y(want.size(), NAN);
  sdflow_kernels::conv_pointwise_depthwise(x.data(), cx, packed.data(), b1.data(), TestEpilogue{}, w2.data(),
                                           b2.data(), y.data(), g, NoEpilogue{});
  CHECK(close(y, want, scale, "conv_pointwise_depthwise", g));
}

int main() {
  const Form D = Form::direct;
  one_case(D, geometry(1, 3, 4, 4, 5, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));      // 16 positions, 5 channels
  one_case(D, geometry(2, 5, 5, 6, 9, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));      // 30: two vectors, batch 2
  one_case(D, geometry(1, 4, 6, 7, 8, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));      // 42
  one_case(D, geometry(1, 100, 7, 7, 20, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));   // 49: 48 + a remainder of 1
  one_case(D, geometry(1, 70, 7, 8, 12, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));    // 56
  one_case(D, geometry(1, 16, 7, 7, 14, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));    // 61 padded positions: halves
  one_case(D, geometry(1, 3, 51, 51, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));   // many tiles, the last up to 64
  one_case(D, geometry(2, 8, 23, 17, 10, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0));   // stride 2: phase planes
  one_case(D, geometry(1, 6, 15, 13, 8, 1, 3, 3, 1, 1, 2, 2, 2, 1, 0, 2));    // dilation 2, uneven pads
  one_case(D, geometry(1, 16, 1, 70, 16, 1, 1, 5, 1, 1, 1, 1, 0, 2, 0, 2));   // 1-D
  one_case(D, geometry(1, 32, 20, 20, 24, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));  // few taps: blocks outermost
  const Form C = Form::channels;
  one_case(C, geometry(1, 256, 7, 7, 40, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));   // 7 positions per row, 3 blocks
  one_case(C, geometry(2, 64, 6, 11, 50, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));   // chunks of 6 and 5, 4 blocks
  one_case(C, geometry(1, 128, 14, 14, 16, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1)); // stride 2
  one_case(C, geometry(2, 96, 2, 2, 70, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));    // 1x1 over 2x2: one row of 4
  one_case(C, geometry(2, 40, 7, 7, 33, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));    // 1x1 over 7x7: chunks of 7
  const Form W = Form::winograd;
  one_case(W, geometry(1, 8, 8, 8, 8, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
  one_case(W, geometry(2, 5, 13, 11, 11, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));   // odd sizes, batch 2
  one_case(W, geometry(1, 16, 30, 30, 16, 1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0));  // no padding, several blocks
  pointwise_depthwise_case(1, 16, geometry(1, 24, 20, 20, 24, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
  pointwise_depthwise_case(2, 8, geometry(2, 12, 15, 17, 24, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1));  // multiplier 2
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
