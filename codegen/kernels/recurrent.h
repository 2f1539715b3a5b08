// ONNX LSTM, GRU and RNN: the time loop in native code, one (direction, batch row) pair per OpenMP task, gates in
// double; steps past a row's sequence length leave Y at 0 and the state as it was. Layouts are ONNX's: W [D][G*H][I],
// R [D][G*H][H], B [D][2*G*H] (input then recurrence biases), P [D][3*H] (LSTM peepholes i, o, f), gate order
// LSTM i o f c, GRU z r h; layout 0: X [T][N][I], Y [T][D][N][H], states [D][N][H]; layout 1: X [N][T][I],
// Y [N][T][D][H], states [N][D][H].
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sdflow_kernels {

enum class Activation { sigmoid, tanh, relu, affine, leaky_relu, thresholded_relu, scaled_tanh, hard_sigmoid, elu,
                        softsign, softplus };

struct ActivationFunction {
  Activation kind;
  double alpha, beta;
  double operator()(double v) const {
    switch (kind) {
      case Activation::sigmoid: return 1.0 / (1.0 + std::exp(-v));
      case Activation::tanh: return std::tanh(v);
      case Activation::relu: return v < 0 ? 0.0 : v;
      case Activation::affine: return alpha * v + beta;
      case Activation::leaky_relu: return v >= 0 ? v : alpha * v;
      case Activation::thresholded_relu: return v > alpha ? v : 0.0;
      case Activation::scaled_tanh: return alpha * std::tanh(beta * v);
      case Activation::hard_sigmoid: return std::min(1.0, std::max(0.0, alpha * v + beta));
      case Activation::elu: return v >= 0 ? v : alpha * (std::exp(v) - 1.0);
      case Activation::softsign: return v / (1.0 + std::abs(v));
      case Activation::softplus: return std::log1p(std::exp(v));
    }
    return v;
  }
};

struct RecurrentGeometry {
  int kind;                       // 0 LSTM, 1 GRU, 2 RNN
  int64_t steps, batch, input, hidden, directions;
  bool batch_major;               // layout 1
  bool reverse[2];                // per direction: runs from the last step back
  bool has_clip;
  double clip;
  bool input_forget;              // LSTM: f = 1 - i
  bool linear_before_reset;       // GRU
  ActivationFunction f[2][3];     // per direction: LSTM f g h, GRU f g, RNN f
  int64_t gates() const { return kind == 0 ? 4 : kind == 1 ? 3 : 1; }
};

// Null pointers for the optional inputs and outputs a node does not have. T: the element type, I: lengths'.
template <class T, class I>
void recurrence(const T* x, const T* w, const T* r, const T* b, const I* lengths, const T* h0, const T* c0,
                const T* p, T* y, T* yh, T* yc, const RecurrentGeometry& geo) {
  const int64_t steps = geo.steps, batch = geo.batch, in = geo.input, hidden = geo.hidden;
  const int64_t directions = geo.directions, gates = geo.gates(), gh = gates * hidden;
  auto x_at = [&](int64_t t, int64_t n) { return geo.batch_major ? (n * steps + t) * in : (t * batch + n) * in; };
  auto y_at = [&](int64_t t, int64_t d, int64_t n) {
    return geo.batch_major ? ((n * steps + t) * directions + d) * hidden : ((t * directions + d) * batch + n) * hidden;
  };
  auto state_at = [&](int64_t d, int64_t n) {
    return geo.batch_major ? (n * directions + d) * hidden : (d * batch + n) * hidden;
  };
  if (y)
    for (int64_t e = 0; e < steps * directions * batch * hidden; ++e) y[e] = (T)0;
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < directions * batch; ++task) {
    const int64_t d = task / batch, n = task % batch;
    std::vector<double> buffer(gh * (in + hidden + 1) + in + 4 * hidden);
    double* wd = buffer.data();
    double* rd = wd + gh * in;
    double* g = rd + gh * hidden;
    double* xs = g + gh;
    double* h = xs + in;
    double* c = h + hidden;
    double* reset = c + hidden;
    double* next = reset + hidden;
    for (int64_t e = 0; e < gh * in; ++e) wd[e] = (double)w[d * gh * in + e];
    for (int64_t e = 0; e < gh * hidden; ++e) rd[e] = (double)r[d * gh * hidden + e];
    auto wbias = [&](int64_t q) { return b ? (double)b[d * 2 * gh + q] : 0.0; };
    auto rbias = [&](int64_t q) { return b ? (double)b[d * 2 * gh + gh + q] : 0.0; };
    auto peep = [&](int64_t q) { return p ? (double)p[d * 3 * hidden + q] : 0.0; };
    auto clip = [&](double v) { return geo.has_clip ? (v < -geo.clip ? -geo.clip : (v > geo.clip ? geo.clip : v)) : v; };
    auto dot = [](const double* a, const double* v, int64_t count) {
      double s = 0;
      for (int64_t k = 0; k < count; ++k) s += a[k] * v[k];
      return s;
    };
    const ActivationFunction* f = geo.f[d];
    for (int64_t j = 0; j < hidden; ++j) {
      h[j] = h0 ? (double)h0[state_at(d, n) + j] : 0.0;
      c[j] = c0 ? (double)c0[state_at(d, n) + j] : 0.0;
    }
    const int64_t length = lengths ? std::min<int64_t>(steps, std::max<int64_t>(0, (int64_t)lengths[n])) : steps;
    for (int64_t s = 0; s < length; ++s) {
      const int64_t t = geo.reverse[d] ? length - 1 - s : s;
      for (int64_t k = 0; k < in; ++k) xs[k] = (double)x[x_at(t, n) + k];
      if (geo.kind == 0) {  // LSTM
        for (int64_t q = 0; q < 4 * hidden; ++q)
          g[q] = wbias(q) + rbias(q) + dot(wd + q * in, xs, in) + dot(rd + q * hidden, h, hidden);
        for (int64_t j = 0; j < hidden; ++j) {
          const double i = f[0](clip(g[j] + peep(j) * c[j]));
          const double forget = geo.input_forget ? 1.0 - i : f[0](clip(g[2 * hidden + j] + peep(2 * hidden + j) * c[j]));
          c[j] = forget * c[j] + i * f[1](clip(g[3 * hidden + j]));
          const double o = f[0](clip(g[hidden + j] + peep(hidden + j) * c[j]));
          h[j] = o * f[2](c[j]);
        }
      } else if (geo.kind == 1) {  // GRU
        for (int64_t q = 0; q < 3 * hidden; ++q) g[q] = wbias(q) + dot(wd + q * in, xs, in);
        for (int64_t q = 0; q < 2 * hidden; ++q) g[q] = f[0](clip(g[q] + rbias(q) + dot(rd + q * hidden, h, hidden)));
        for (int64_t j = 0; j < hidden; ++j) reset[j] = g[hidden + j] * h[j];
        for (int64_t j = 0; j < hidden; ++j) {
          const double* rh = rd + (2 * hidden + j) * hidden;
          const double candidate = geo.linear_before_reset
              ? g[2 * hidden + j] + g[hidden + j] * (dot(rh, h, hidden) + rbias(2 * hidden + j))
              : g[2 * hidden + j] + dot(rh, reset, hidden) + rbias(2 * hidden + j);
          next[j] = (1.0 - g[j]) * f[1](clip(candidate)) + g[j] * h[j];
        }
        for (int64_t j = 0; j < hidden; ++j) h[j] = next[j];
      } else {  // RNN
        for (int64_t j = 0; j < hidden; ++j)
          g[j] = f[0](clip(wbias(j) + rbias(j) + dot(wd + j * in, xs, in) + dot(rd + j * hidden, h, hidden)));
        for (int64_t j = 0; j < hidden; ++j) h[j] = g[j];
      }
      if (y)
        for (int64_t j = 0; j < hidden; ++j) y[y_at(t, d, n) + j] = (T)h[j];
    }
    for (int64_t j = 0; j < hidden; ++j) {
      if (yh) yh[state_at(d, n) + j] = (T)h[j];
      if (yc) yc[state_at(d, n) + j] = (T)c[j];
    }
  }
}

}  // namespace sdflow_kernels
