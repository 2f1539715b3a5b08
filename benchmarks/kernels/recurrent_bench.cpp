// Microbenchmark of codegen/kernels/recurrent.h: LSTM and GRU with 64 inputs and 64 hidden units over 100 steps,
// batch 1 (a voice-activity detector's shape) and bidirectional batch 2; medians of 10 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/recurrent_bench.cpp -o /tmp/recurrent_bench
//   OMP_NUM_THREADS=2 /tmp/recurrent_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "recurrent.h"

int main() {
  using namespace sdflow_kernels;
  const ActivationFunction sig{Activation::sigmoid, 0, 0}, th{Activation::tanh, 0, 0};
  for (int kind : {0, 1})
    for (int64_t directions : {1, 2}) {
      const int64_t steps = 100, batch = directions, in = 64, hidden = 64, gates = kind == 0 ? 4 : 3;
      const RecurrentGeometry g{kind, steps, batch, in, hidden, directions, false, {false, true}, false, 0.0, false,
                                false, {{sig, th, th}, {sig, th, th}}};
      std::vector<float> x(steps * batch * in, 0.1f), w(directions * gates * hidden * in, 0.01f),
          r(directions * gates * hidden * hidden, 0.01f), b(directions * 2 * gates * hidden, 0.0f),
          y(steps * directions * batch * hidden);
      const double ms = median_ms([&] {
        recurrence(x.data(), w.data(), r.data(), b.data(), (const int32_t*)nullptr, (const float*)nullptr,
                   (const float*)nullptr, (const float*)nullptr, y.data(), (float*)nullptr, (float*)nullptr, g);
      }, 10, 1, 2);
      std::printf("%s, %ld direction(s), batch %ld, 100 steps of 64 -> 64: %.3f ms\n", kind == 0 ? "LSTM" : "GRU",
                  (long)directions, (long)batch, ms);
    }
  return 0;
}
