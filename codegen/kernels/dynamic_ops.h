// Ops whose output shape depends on input values (ONNX NonZero, NonMaxSuppression, Compress with a run-time
// condition, Unique). A compiled SDFG has its shapes fixed before it runs, so sdflow runs these between compiled
// parts of the model (sdflow/staged.py): each kernel here first counts its output, then the caller allocates it and
// the kernel fills it. Called through the C functions of dynamic_ops.cpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

namespace sdflow_kernels {

// ---- NonZero: the indices of the non-zero elements, one row per dimension, in row-major order --------------------

template <class T>
int64_t nonzero_count(const T* x, int64_t n) {
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) count += x[i] != T(0);
    return count;
}

// out: [rank, count] (count from nonzero_count).
template <class T>
void nonzero_fill(const T* x, const int64_t* shape, int rank, int64_t count, int64_t* out) {
    int64_t n = 1;
    for (int d = 0; d < rank; ++d) n *= shape[d];
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (x[i] == T(0)) continue;
        int64_t rest = i;
        for (int d = rank - 1; d >= 0; --d) {
            out[d * count + k] = rest % shape[d];
            rest /= shape[d];
        }
        ++k;
    }
}

// ---- NonMaxSuppression (ONNX opset 10/11) ---------------------------------------------------------------------

struct Box {
    float x_min, y_min, x_max, y_max;
};

inline Box corners(const float* b, int center_point_box) {
    if (center_point_box) {  // [x_center, y_center, width, height]
        return {b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2};
    }
    // [y1, x1, y2, x2], any two opposite corners
    return {std::min(b[1], b[3]), std::min(b[0], b[2]), std::max(b[1], b[3]), std::max(b[0], b[2])};
}

// True when the two boxes overlap by more than `iou_threshold` (ONNX's reference and ONNX Runtime's test).
inline bool suppresses(const Box& a, const Box& b, float iou_threshold) {
    const float ix_min = std::max(a.x_min, b.x_min), ix_max = std::min(a.x_max, b.x_max);
    if (ix_max <= ix_min) return false;
    const float iy_min = std::max(a.y_min, b.y_min), iy_max = std::min(a.y_max, b.y_max);
    if (iy_max <= iy_min) return false;
    const float intersection = (ix_max - ix_min) * (iy_max - iy_min);
    if (intersection <= 0) return false;
    const float area_a = (a.x_max - a.x_min) * (a.y_max - a.y_min), area_b = (b.x_max - b.x_min) * (b.y_max - b.y_min);
    const float union_area = area_a + area_b - intersection;
    if (area_a <= 0 || area_b <= 0 || union_area <= 0) return false;
    return intersection / union_area > iou_threshold;
}

// boxes [batches, boxes, 4], scores [batches, classes, boxes]; writes (batch, class, box) triples into `selected`
// (room for batches * classes * min(boxes, max_per_class) of them) and returns how many. Candidates are the
// boxes scoring above `score_threshold` (all when `has_score_threshold` is 0), highest score first, ties by
// lower index; a candidate is kept unless it overlaps a kept one by more than `iou_threshold`.
inline int64_t non_max_suppression(const float* boxes, const float* scores, int64_t batches, int64_t classes,
                                   int64_t num_boxes, int64_t max_per_class, float iou_threshold,
                                   int has_score_threshold, float score_threshold, int center_point_box,
                                   int64_t* selected) {
    int64_t count = 0;
    if (max_per_class <= 0) return 0;
    std::vector<int64_t> order;
    std::vector<Box> kept;
    std::vector<Box> box(num_boxes);
    for (int64_t b = 0; b < batches; ++b) {
        for (int64_t i = 0; i < num_boxes; ++i) box[i] = corners(boxes + (b * num_boxes + i) * 4, center_point_box);
        for (int64_t c = 0; c < classes; ++c) {
            const float* s = scores + (b * classes + c) * num_boxes;
            order.clear();
            for (int64_t i = 0; i < num_boxes; ++i)
                if (!has_score_threshold || s[i] > score_threshold) order.push_back(i);
            std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return s[x] > s[y]; });
            kept.clear();
            for (int64_t i : order) {
                if (int64_t(kept.size()) >= max_per_class) break;
                bool keep = true;
                for (const Box& k : kept) {
                    if (suppresses(box[i], k, iou_threshold)) {
                        keep = false;
                        break;
                    }
                }
                if (!keep) continue;
                kept.push_back(box[i]);
                selected[count * 3] = b;
                selected[count * 3 + 1] = c;
                selected[count * 3 + 2] = i;
                ++count;
            }
        }
    }
    return count;
}

// ---- Compress with a condition known at run time: the slices along `axis` whose condition entry is true -------

// The number of kept slices: true entries among the first `axis_size` of the condition.
inline int64_t compress_count(const bool* condition, int64_t condition_size, int64_t axis_size) {
    int64_t count = 0;
    for (int64_t i = 0; i < std::min(condition_size, axis_size); ++i) count += condition[i];
    return count;
}

// x viewed as [outer, axis_size, inner] elements of `element_size` bytes; out as [outer, count, inner].
inline void compress_fill(const char* x, const bool* condition, int64_t condition_size, int64_t outer,
                          int64_t axis_size, int64_t inner, int64_t element_size, char* out) {
    const int64_t row = inner * element_size;
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < std::min(condition_size, axis_size); ++i)
            if (condition[i]) {
                std::memcpy(out, x + (o * axis_size + i) * row, row);
                out += row;
            }
}

// ---- Unique over slices along an axis (or over all elements): ONNX's four outputs -----------------------------

// x viewed as [outer, axis_size, inner] elements of `element_size` bytes, compared as values by `less`/`equal`.
// first: index of each unique slice's first occurrence, in output order (sorted by value when `sorted`, else by
// first occurrence); inverse: for each slice, its unique slice's position; counts: occurrences. Returns the number
// of unique slices (first/counts need room for axis_size).
template <class T>
int64_t unique_slices(const T* x, int64_t outer, int64_t axis_size, int64_t inner, int sorted, int64_t* first,
                      int64_t* inverse, int64_t* counts) {
    auto compare = [&](int64_t a, int64_t b) -> int {  // lexicographic over the slice's elements (outer, inner)
        for (int64_t o = 0; o < outer; ++o)
            for (int64_t k = 0; k < inner; ++k) {
                const T va = x[(o * axis_size + a) * inner + k], vb = x[(o * axis_size + b) * inner + k];
                if (va < vb) return -1;
                if (vb < va) return 1;
            }
        return 0;
    };
    std::vector<int64_t> order(axis_size);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return compare(a, b) < 0; });
    // Groups of equal slices in sorted order; each group's representative is its first occurrence.
    std::vector<int64_t> group_of(axis_size), group_first, group_count;
    for (int64_t r = 0; r < axis_size; ++r) {
        const int64_t i = order[r];
        if (r == 0 || compare(order[r - 1], i) != 0) {
            group_first.push_back(i);
            group_count.push_back(0);
        }
        group_of[i] = int64_t(group_first.size()) - 1;
        ++group_count.back();
    }
    const int64_t groups = int64_t(group_first.size());
    std::vector<int64_t> position(groups);  // group -> output position
    std::iota(position.begin(), position.end(), 0);
    if (!sorted) {  // by first occurrence
        std::vector<int64_t> by_first(groups);
        std::iota(by_first.begin(), by_first.end(), 0);
        std::sort(by_first.begin(), by_first.end(), [&](int64_t a, int64_t b) { return group_first[a] < group_first[b]; });
        for (int64_t p = 0; p < groups; ++p) position[by_first[p]] = p;
    }
    for (int64_t g = 0; g < groups; ++g) {
        first[position[g]] = group_first[g];
        counts[position[g]] = group_count[g];
    }
    for (int64_t i = 0; i < axis_size; ++i) inverse[i] = position[group_of[i]];
    return groups;
}

}  // namespace sdflow_kernels
