// Unit test of codegen/kernels/dynamic_ops.h against hand-worked cases and, for NonMaxSuppression, a brute-force
// reference on random boxes (greedy selection restated directly from the ONNX definition). Prints "ok".
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "check.h"
#include "dynamic_ops.h"

using namespace sdflow_kernels;


// The ONNX definition, written for clarity: repeatedly take the best remaining candidate, keep it if it does not
// overlap a kept box too much.
static std::vector<int64_t> reference_nms(const std::vector<float>& boxes, const std::vector<float>& scores, int64_t n,
                                          int64_t limit, float iou, float threshold) {
    std::vector<bool> used(n, false);
    std::vector<int64_t> kept;
    while (int64_t(kept.size()) < limit) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; ++i)
            if (!used[i] && scores[i] > threshold && (best < 0 || scores[i] > scores[best])) best = i;
        if (best < 0) break;
        used[best] = true;
        bool keep = true;
        for (int64_t k : kept)
            keep = keep && !suppresses(corners(&boxes[best * 4], 0), corners(&boxes[k * 4], 0), iou);
        if (keep) kept.push_back(best);
    }
    return kept;
}

int main() {
    // NonZero of a 2x3 matrix: row indices, then column indices.
    const float x[6] = {0, 1.5f, 0, -2, 0, 3};
    const int64_t shape[2] = {2, 3};
    CHECK(nonzero_count(x, 6) == 3);
    int64_t where[6];
    nonzero_fill(x, shape, 2, 3, where);
    const int64_t expected_where[6] = {0, 1, 1, 1, 0, 2};
    for (int k = 0; k < 6; ++k) CHECK(where[k] == expected_where[k]);

    // NonMaxSuppression on ONNX's "suppress by IOU" example (center_point_box 0): boxes 3, 0, 5 are kept.
    const float boxes[24] = {0, 0, 1, 1, 0, 0.1f, 1, 1.1f, 0, -0.1f, 1, 0.9f, 0, 10, 1, 11, 0, 10.1f, 1, 11.1f,
                             0, 100, 1, 101};
    const float scores[6] = {0.9f, 0.75f, 0.6f, 0.95f, 0.5f, 0.3f};
    int64_t selected[18];
    const int64_t count = non_max_suppression(boxes, scores, 1, 1, 6, 3, 0.5f, 1, 0.0f, 0, selected);
    CHECK(count == 3);
    const int64_t kept[3] = {3, 0, 5};
    for (int k = 0; k < 3 && k < count; ++k) CHECK(selected[k * 3] == 0 && selected[k * 3 + 1] == 0 && selected[k * 3 + 2] == kept[k]);
    // A score threshold of 0.4 drops box 5; a limit of 2 stops after two.
    CHECK(non_max_suppression(boxes, scores, 1, 1, 6, 3, 0.5f, 1, 0.4f, 0, selected) == 2);
    CHECK(non_max_suppression(boxes, scores, 1, 1, 6, 2, 0.5f, 0, 0.0f, 0, selected) == 2);

    // Random boxes against the reference (distinct scores: the order is then unambiguous).
    std::mt19937 random(7);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (int trial = 0; trial < 50; ++trial) {
        const int64_t n = 1 + trial * 3;
        std::vector<float> b(n * 4), s(n);
        for (int64_t i = 0; i < n; ++i) {
            const float y = uniform(random) * 10, x0 = uniform(random) * 10;
            b[i * 4] = y, b[i * 4 + 1] = x0, b[i * 4 + 2] = y + 1 + uniform(random) * 3, b[i * 4 + 3] = x0 + 1 + uniform(random) * 3;
            s[i] = uniform(random) + float(i) * 1e-4f;
        }
        std::vector<int64_t> out(n * 3);
        const int64_t got = non_max_suppression(b.data(), s.data(), 1, 1, n, 10, 0.3f, 1, 0.2f, 0, out.data());
        const std::vector<int64_t> want = reference_nms(b, s, n, 10, 0.3f, 0.2f);
        CHECK(got == int64_t(want.size()));
        for (int64_t k = 0; k < got && k < int64_t(want.size()); ++k) CHECK(out[k * 3 + 2] == want[k]);
    }

    // Compress along axis 1 of a 2x4 matrix with a 3-entry condition: columns 0 and 2.
    const int32_t m[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const bool condition[3] = {true, false, true};
    CHECK(compress_count(condition, 3, 4) == 2);
    int32_t compressed[4];
    compress_fill(reinterpret_cast<const char*>(m), condition, 3, 2, 4, 1, sizeof(int32_t),
                  reinterpret_cast<char*>(compressed));
    const int32_t expected_compressed[4] = {1, 3, 5, 7};
    for (int k = 0; k < 4; ++k) CHECK(compressed[k] == expected_compressed[k]);

    // Unique of [2, 1, 1, 3, 4, 3], sorted and by first occurrence (ONNX's example).
    const int64_t u[6] = {2, 1, 1, 3, 4, 3};
    int64_t first[6], inverse[6], counts[6];
    CHECK(unique_slices(u, 1, 6, 1, 1, first, inverse, counts) == 4);
    const int64_t sorted_first[4] = {1, 0, 3, 4}, sorted_inverse[6] = {1, 0, 0, 2, 3, 2}, sorted_counts[4] = {2, 1, 2, 1};
    for (int k = 0; k < 4; ++k) CHECK(first[k] == sorted_first[k] && counts[k] == sorted_counts[k]);
    for (int k = 0; k < 6; ++k) CHECK(inverse[k] == sorted_inverse[k]);
    CHECK(unique_slices(u, 1, 6, 1, 0, first, inverse, counts) == 4);
    const int64_t seen_first[4] = {0, 1, 3, 4}, seen_inverse[6] = {0, 1, 1, 2, 3, 2}, seen_counts[4] = {1, 2, 2, 1};
    for (int k = 0; k < 4; ++k) CHECK(first[k] == seen_first[k] && counts[k] == seen_counts[k]);
    for (int k = 0; k < 6; ++k) CHECK(inverse[k] == seen_inverse[k]);
    // Rows of a 3x2 matrix along axis 0: rows 0 and 2 are equal.
    const float rows[6] = {1, 2, 0, 5, 1, 2};
    CHECK(unique_slices(rows, 1, 3, 2, 1, first, inverse, counts) == 2);
    CHECK(first[0] == 1 && first[1] == 0 && counts[1] == 2 && inverse[2] == 1);

    if (failures) return EXIT_FAILURE;
    std::printf("ok\n");
    return 0;
}
