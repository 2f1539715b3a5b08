// Timing for the kernels' microbenchmarks (included by each *_bench.cpp beside it).
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

// Milliseconds per call of run(): the median of `runs` timed blocks of `calls` calls each, after `warmup` calls.
template <typename F>
double median_ms(F&& run, int runs = 10, int calls = 1, int warmup = 0) {
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> times;
  for (int block = 0; block < runs; ++block) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) run();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                    calls);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}
