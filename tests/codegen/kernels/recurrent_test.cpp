// Unit test of codegen/kernels/recurrent.h against ONNX's equations written gate by gate in double (LSTM with
// peepholes, GRU in both linear_before_reset forms, RNN with tanh and a non-default activation), forward, reverse
// and bidirectional, with sequence lengths shorter than the input (Y zero past them, the state kept), a clip, and
// batch-major layout giving the same numbers as the time-major one.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "recurrent.h"

using namespace sdflow_kernels;

static double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

struct Problem {
  int kind;
  int64_t steps = 5, batch = 3, in = 4, hidden = 3, directions;
  std::vector<float> x, w, r, b, h0, c0, p;
  std::vector<int32_t> lengths = {5, 3, 0};
};

// Expected Y [T][D][N][H] and Y_h [D][N][H] (time-major), gate by gate.
static void reference(const Problem& q, const RecurrentGeometry& geo, std::vector<double>& y, std::vector<double>& yh) {
  const int64_t H = q.hidden, I = q.in, G = geo.gates();
  y.assign(q.steps * q.directions * q.batch * H, 0.0);
  yh.assign(q.directions * q.batch * H, 0.0);
  for (int64_t d = 0; d < q.directions; ++d)
    for (int64_t n = 0; n < q.batch; ++n) {
      std::vector<double> h(H), c(H);
      for (int64_t j = 0; j < H; ++j) h[j] = q.h0[(d * q.batch + n) * H + j], c[j] = q.c0[(d * q.batch + n) * H + j];
      const int64_t length = q.lengths[n];
      for (int64_t s = 0; s < length; ++s) {
        const int64_t t = geo.reverse[d] ? length - 1 - s : s;
        auto gate = [&](int64_t block, int64_t j, const std::vector<double>& state, bool with_r, bool with_rb) {
          const int64_t row = block * H + j;
          double v = q.b[d * 2 * G * H + row];
          if (with_rb) v += q.b[d * 2 * G * H + G * H + row];
          for (int64_t k = 0; k < I; ++k) v += (double)q.w[(d * G * H + row) * I + k] * q.x[(t * q.batch + n) * I + k];
          if (with_r)
            for (int64_t k = 0; k < H; ++k) v += (double)q.r[(d * G * H + row) * H + k] * state[k];
          return v;
        };
        auto clip = [&](double v) { return geo.has_clip ? std::max(-geo.clip, std::min(geo.clip, v)) : v; };
        std::vector<double> next(H);
        for (int64_t j = 0; j < H; ++j) {
          if (q.kind == 0) {  // LSTM: gates i o f c, peepholes i o f
            const double i = sigmoid(clip(gate(0, j, h, true, true) + q.p[d * 3 * H + j] * c[j]));
            const double f = sigmoid(clip(gate(2, j, h, true, true) + q.p[d * 3 * H + 2 * H + j] * c[j]));
            const double cc = f * c[j] + i * std::tanh(clip(gate(3, j, h, true, true)));
            const double o = sigmoid(clip(gate(1, j, h, true, true) + q.p[d * 3 * H + H + j] * cc));
            c[j] = cc, next[j] = o * std::tanh(cc);
          } else if (q.kind == 1) {  // GRU: gates z r h
            const double z = sigmoid(clip(gate(0, j, h, true, true)));
            double candidate;
            if (geo.linear_before_reset) {
              const double rr = sigmoid(clip(gate(1, j, h, true, true)));
              double rh = q.b[d * 2 * G * H + G * H + 2 * H + j];
              for (int64_t k = 0; k < H; ++k) rh += (double)q.r[(d * G * H + 2 * H + j) * H + k] * h[k];
              candidate = gate(2, j, h, false, false) + rr * rh;
            } else {
              std::vector<double> reset(H);
              for (int64_t k = 0; k < H; ++k) reset[k] = sigmoid(clip(gate(1, k, h, true, true))) * h[k];
              candidate = gate(2, j, reset, true, true);
            }
            next[j] = (1 - z) * std::tanh(clip(candidate)) + z * h[j];
          } else {  // RNN with the activation of the test: LeakyRelu(0.1)
            const double v = clip(gate(0, j, h, true, true));
            next[j] = v >= 0 ? v : 0.1 * v;
          }
        }
        h = next;
        for (int64_t j = 0; j < H; ++j) y[((t * q.directions + d) * q.batch + n) * H + j] = h[j];
      }
      for (int64_t j = 0; j < H; ++j) yh[(d * q.batch + n) * H + j] = h[j];
    }
}

static void one_case(int kind, int directions, bool reverse, bool linear_before_reset, bool clip) {
  Problem q;
  q.kind = kind, q.directions = directions;
  const int64_t G = kind == 0 ? 4 : kind == 1 ? 3 : 1, H = q.hidden;
  q.x = random_vector(q.steps * q.batch * q.in), q.w = random_vector(directions * G * H * q.in);
  q.r = random_vector(directions * G * H * H), q.b = random_vector(directions * 2 * G * H);
  q.h0 = random_vector(directions * q.batch * H), q.c0 = random_vector(directions * q.batch * H);
  q.p = random_vector(directions * 3 * H);
  const ActivationFunction sig{Activation::sigmoid, 0, 0}, th{Activation::tanh, 0, 0},
      leaky{Activation::leaky_relu, 0.1, 0};
  RecurrentGeometry geo{kind, q.steps, q.batch, q.in, H, directions, false, {reverse, true}, clip, 0.6, false,
                        linear_before_reset, {{sig, th, th}, {sig, th, th}}};
  if (kind == 2) geo.f[0][0] = geo.f[1][0] = leaky;
  std::vector<double> want_y, want_yh;
  reference(q, geo, want_y, want_yh);
  std::vector<float> y(want_y.size(), 7.0f), yh(want_yh.size()), yc(want_yh.size());
  recurrence(q.x.data(), q.w.data(), q.r.data(), q.b.data(), q.lengths.data(), q.h0.data(), q.c0.data(),
             kind == 0 ? q.p.data() : nullptr, y.data(), yh.data(), yc.data(), geo);
  for (size_t i = 0; i < want_y.size(); ++i) CHECK(std::fabs(y[i] - want_y[i]) < 1e-6);
  for (size_t i = 0; i < want_yh.size(); ++i) CHECK(std::fabs(yh[i] - want_yh[i]) < 1e-6);
  // Batch-major: X [N][T][I] in, Y [N][T][D][H] out, the same numbers.
  std::vector<float> xb(q.x.size());
  for (int64_t t = 0; t < q.steps; ++t)
    for (int64_t n = 0; n < q.batch; ++n)
      for (int64_t k = 0; k < q.in; ++k) xb[(n * q.steps + t) * q.in + k] = q.x[(t * q.batch + n) * q.in + k];
  std::vector<float> h0b(q.h0.size()), c0b(q.c0.size());
  for (int64_t d = 0; d < directions; ++d)
    for (int64_t n = 0; n < q.batch; ++n)
      for (int64_t j = 0; j < H; ++j)
        h0b[(n * directions + d) * H + j] = q.h0[(d * q.batch + n) * H + j],
        c0b[(n * directions + d) * H + j] = q.c0[(d * q.batch + n) * H + j];
  geo.batch_major = true;
  std::vector<float> yb(y.size());
  recurrence(xb.data(), q.w.data(), q.r.data(), q.b.data(), q.lengths.data(), h0b.data(), c0b.data(),
             kind == 0 ? q.p.data() : nullptr, yb.data(), (float*)nullptr, (float*)nullptr, geo);
  for (int64_t t = 0; t < q.steps; ++t)
    for (int64_t d = 0; d < directions; ++d)
      for (int64_t n = 0; n < q.batch; ++n)
        for (int64_t j = 0; j < H; ++j)
          CHECK(yb[((n * q.steps + t) * directions + d) * H + j] == y[((t * directions + d) * q.batch + n) * H + j]);
}

int main() {
  for (int kind = 0; kind < 3; ++kind) {
    one_case(kind, 1, false, false, false);
    one_case(kind, 1, true, false, true);
    one_case(kind, 2, false, false, false);
  }
  one_case(1, 1, false, true, false);  // GRU, linear_before_reset
  one_case(1, 2, false, true, true);
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
