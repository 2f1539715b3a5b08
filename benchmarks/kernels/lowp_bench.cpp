// Microbenchmark of codegen/kernels/lowp.h: float32 -> float8 E4M3FN / int4 encoding and back, 16M elements, one
// thread (the generated Cast maps run it per element, in parallel). Medians of 10 runs, in ns per element.
//   g++ -O3 -march=native -I codegen/kernels benchmarks/kernels/lowp_bench.cpp -o /tmp/lowp_bench && /tmp/lowp_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "bench.h"
#include "lowp.h"

using namespace sdflow::lowp;

static double ns_per_element(const std::function<void()>& run, size_t n) { return median_ms(run) * 1e6 / double(n); }

int main() {
  const size_t n = size_t(1) << 24;
  std::mt19937 random(0);
  std::normal_distribution<float> normal(0.0f, 50.0f);
  std::vector<float> x(n), back(n);
  std::vector<uint8_t> bytes(n);
  for (float& v : x) v = normal(random);
  std::printf("encode e4m3fn: %.2f ns/element\n", ns_per_element([&] {
    for (size_t i = 0; i < n; ++i) bytes[i] = encode<f8e4m3fn>(x[i], true);
  }, n));
  std::printf("decode e4m3fn: %.2f ns/element\n", ns_per_element([&] {
    for (size_t i = 0; i < n; ++i) back[i] = decode<f8e4m3fn>(bytes[i]);
  }, n));
  std::printf("encode int4:   %.2f ns/element\n", ns_per_element([&] {
    for (size_t i = 0; i < n; ++i) bytes[i] = encode<i4>(x[i] / 16.0f);
  }, n));
  std::printf("decode int4:   %.2f ns/element\n", ns_per_element([&] {
    for (size_t i = 0; i < n; ++i) back[i] = decode<i4>(bytes[i]);
  }, n));
  return back[n / 2] > 1e30f;  // keep the results alive
}
