// Random data for the kernels' unit tests: one engine per test program, seeded the same on every run, and vectors
// of floats uniform in [lo, hi).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

static std::mt19937 random_engine(7);

inline std::vector<float> random_vector(int64_t size, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> value(lo, hi);
  std::vector<float> v(size);
  for (auto& x : v) x = value(random_engine);
  return v;
}
