// Microbenchmark of codegen/kernels/gemm.h: GFLOP/s of C = A . B with B packed once (a model's weights), on the
// per-layer shapes of BERT-base / GPT-2 at sequence 128 (batch 1 and 8), batch-1 GEMV, square sizes, and
// a B packed by each call, and attention's batched per-head products. Median of repeated runs. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/gemm_bench.cpp -o /tmp/gemm_bench
//   OMP_NUM_THREADS=2 /tmp/gemm_bench [M K N ...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench.h"
#include "gemm.h"

namespace g = sdflow_kernels::gemm;

// Seconds per call: the median of 7 blocks of calls worth ~3 GFLOP each, after 3 warm-up calls.
template <typename F>
static double median_seconds(F run, double flop) {
  const int calls = std::max(3, std::min(2000, int(3e9 / std::max(flop, 1.0))));
  return median_ms(run, 7, calls, 3) * 1e-3;
}

static void packed_case(int64_t m, int64_t k, int64_t n) {
  std::mt19937 random(0);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> a(m * k), b(k * n), c(m * n), packed(g::packed_size(k, n));
  for (auto& v : a) v = value(random);
  for (auto& v : b) v = value(random);
  g::pack_b(b.data(), n, false, k, n, packed.data());
  const double flop = 2.0 * m * n * k;
  const double s = median_seconds([&] { g::gemm_packed(m, n, k, a.data(), k, packed.data(), c.data(), n); }, flop);
  std::printf("packed  %5ld x %5ld x %5ld  %9.4f ms  %6.1f GFLOP/s\n", long(m), long(k), long(n), s * 1e3,
              flop / s * 1e-9);
}

// B packed by the call itself (a B computed at run time), row-major or given transposed.
static void unpacked_case(int64_t m, int64_t k, int64_t n, bool trans_b) {
  std::vector<float> a(m * k, 0.5f), b(k * n, 0.25f), c(m * n);
  const double flop = 2.0 * m * n * k;
  const double s = median_seconds([&] {
    g::gemm(m, n, k, a.data(), k, b.data(), trans_b ? k : n, trans_b, c.data(), n);
  }, flop);
  std::printf("per-call %5ld x %5ld x %5ld%s %9.4f ms  %6.1f GFLOP/s\n", long(m), long(k), long(n),
              trans_b ? " (B^T)" : "      ", s * 1e3, flop / s * 1e-9);
}

static void attention_case(int64_t heads, int64_t seq, int64_t dim) {
  std::vector<float> q(heads * seq * dim, 0.5f), kt(heads * seq * dim, 0.25f), s(heads * seq * seq);
  const double flop = 2.0 * heads * seq * seq * dim;
  const double t = median_seconds([&] {
    g::gemm_batched(heads, seq, seq, dim, q.data(), dim, kt.data(), dim, true, s.data(), seq,
                    [&](int64_t h, int64_t& ao, int64_t& bo, int64_t& co) {
                      ao = h * seq * dim, bo = h * seq * dim, co = h * seq * seq;
                    });
  }, flop);
  std::printf("Q.K^T   %ld heads x %ld x %ld (dim %ld)  %9.4f ms  %6.1f GFLOP/s\n", long(heads), long(seq),
              long(seq), long(dim), t * 1e3, flop / t * 1e-9);
}

int main(int argc, char** argv) {
  if (argc >= 4) {
    for (int i = 1; i + 2 < argc; i += 3) packed_case(std::atol(argv[i]), std::atol(argv[i + 1]), std::atol(argv[i + 2]));
    return 0;
  }
  for (int64_t tokens : {int64_t(1), int64_t(128), int64_t(1024)}) {
    const int64_t shapes[][2] = {{768, 768}, {768, 2304}, {768, 3072}, {3072, 768}};
    for (auto& kn : shapes) packed_case(tokens, kn[0], kn[1]);
  }
  for (int64_t size : {int64_t(256), int64_t(1024), int64_t(2048)}) packed_case(size, size, size);
  for (bool trans_b : {false, true}) {
    unpacked_case(128, 384, 1152, trans_b);
    unpacked_case(128, 768, 768, trans_b);
  }
  attention_case(12, 128, 64);
  attention_case(96, 128, 64);
  return 0;
}
