// Unit test of codegen/kernels/vmath.h against the C library's double-precision exp and erf: relative error of
// exp_f below 4e-7 over [-87, 88], absolute error of erf_f below 3e-7 over [-6, 6], and the edges (underflow to 0,
// overflow and +inf to inf, -inf to 0, NaN kept, erf's +-1 tails); and that a loop of them vectorises to the same
// values as the scalar calls.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "check.h"
#include "vmath.h"

using sdflow_kernels::erf_f;
using sdflow_kernels::exp_f;

int main() {
  double worst_exp = 0, worst_erf = 0;
  for (int i = 0; i <= 2000000; ++i) {
    const float x = -87.0f + 175.0f * float(i) / 2000000.0f;
    const double want = std::exp(double(x));
    worst_exp = std::max(worst_exp, std::fabs(exp_f(x) - want) / want);
  }
  for (int i = 0; i <= 1200000; ++i) {
    const float x = -6.0f + 12.0f * float(i) / 1200000.0f;
    worst_erf = std::max(worst_erf, std::fabs(erf_f(x) - std::erf(double(x))));
  }
  CHECK(worst_exp < 4e-7);
  CHECK(worst_erf < 3e-7);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(exp_f(-100.0f) == 0.0f && exp_f(-inf) == 0.0f);
  CHECK(exp_f(89.0f) == inf && exp_f(inf) == inf);
  CHECK(std::isnan(exp_f(nan)) && std::isnan(erf_f(nan)));
  CHECK(exp_f(0.0f) == 1.0f && erf_f(0.0f) == 0.0f);
  CHECK(erf_f(10.0f) == 1.0f && erf_f(-10.0f) == -1.0f && erf_f(inf) == 1.0f && erf_f(-inf) == -1.0f);
  // A vectorised loop gives the scalar results.
  std::vector<float> x(1000), e(1000), r(1000);
  for (int i = 0; i < 1000; ++i) x[i] = -20.0f + 0.04f * float(i);
#pragma omp simd
  for (int i = 0; i < 1000; ++i) e[i] = exp_f(x[i]), r[i] = erf_f(x[i]);
  for (int i = 0; i < 1000; ++i) CHECK(e[i] == exp_f(x[i]) && r[i] == erf_f(x[i]));
  if (failures) std::printf("worst exp relative error %g, erf absolute %g\n", worst_exp, worst_erf);
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
