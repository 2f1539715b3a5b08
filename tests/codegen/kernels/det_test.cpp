// Unit test of codegen/kernels/det.h against the Leibniz formula (a sum over all permutations, no pivoting) on
// random 1x1 to 5x5 matrices, plus permutation matrices (row exchanges: +-1), singular and zero-column matrices.
// Prints "ok".
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "check.h"
#include "det.h"

static double leibniz(const std::vector<double>& a, int m) {
    std::vector<int> p(m);
    std::iota(p.begin(), p.end(), 0);
    double total = 0;
    do {
        int inversions = 0;
        for (int i = 0; i < m; ++i)
            for (int j = i + 1; j < m; ++j) inversions += p[i] > p[j];
        double term = inversions % 2 ? -1.0 : 1.0;
        for (int i = 0; i < m; ++i) term *= a[i * m + p[i]];
        total += term;
    } while (std::next_permutation(p.begin(), p.end()));
    return total;
}

int main() {
    std::mt19937 random(5);
    std::uniform_real_distribution<double> uniform(-2.0, 2.0);
    for (int m = 1; m <= 5; ++m) {
        const int batches = 7;
        std::vector<double> x(batches * m * m), y(batches);
        for (double& v : x) v = uniform(random);
        sdflow_kernels::det(x.data(), batches, m, y.data());
        for (int b = 0; b < batches; ++b) {
            const std::vector<double> a(x.begin() + b * m * m, x.begin() + (b + 1) * m * m);
            CHECK(std::fabs(y[b] - leibniz(a, m)) <= 1e-9 * std::max(1.0, std::fabs(leibniz(a, m))));
        }
    }
    // A permutation needing row exchanges, a singular matrix (two equal rows), a zero column; float in and out.
    const float cases[3][9] = {{0, 1, 0, 0, 0, 1, 1, 0, 0}, {1, 2, 3, 1, 2, 3, 4, 5, 6}, {0, 1, 2, 0, 3, 4, 0, 5, 6}};
    float out[3];
    sdflow_kernels::det(&cases[0][0], 3, 3, out);
    CHECK(out[0] == 1.0f && out[1] == 0.0f && out[2] == 0.0f);
    if (failures) return EXIT_FAILURE;
    std::printf("ok\n");
    return 0;
}
