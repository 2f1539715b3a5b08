// C entry points of dynamic_ops.h for sdflow/staged.py (ctypes). Element types travel as codes:
// 0 float32, 1 float64, 2 int8, 3 uint8 (and bool), 4 int16, 5 uint16, 6 int32, 7 uint32, 8 int64, 9 uint64.
// Every function returns -1 for a type code it does not know.
#include "dynamic_ops.h"

using namespace sdflow_kernels;

#define SDFLOW_DISPATCH(code, CALL)                          \
    switch (code) {                                          \
        case 0: { using T = float; CALL; }                   \
        case 1: { using T = double; CALL; }                  \
        case 2: { using T = int8_t; CALL; }                  \
        case 3: { using T = uint8_t; CALL; }                 \
        case 4: { using T = int16_t; CALL; }                 \
        case 5: { using T = uint16_t; CALL; }                \
        case 6: { using T = int32_t; CALL; }                 \
        case 7: { using T = uint32_t; CALL; }                \
        case 8: { using T = int64_t; CALL; }                 \
        case 9: { using T = uint64_t; CALL; }                \
        default: return -1;                                  \
    }

extern "C" {

int64_t sdflow_nonzero_count(int type_code, const void* x, int64_t n) {
    SDFLOW_DISPATCH(type_code, return nonzero_count(static_cast<const T*>(x), n))
}

int64_t sdflow_nonzero_fill(int type_code, const void* x, const int64_t* shape, int rank, int64_t count,
                            int64_t* out) {
    SDFLOW_DISPATCH(type_code, nonzero_fill(static_cast<const T*>(x), shape, rank, count, out); return 0)
}

int64_t sdflow_non_max_suppression(const float* boxes, const float* scores, int64_t batches, int64_t classes,
                                   int64_t num_boxes, int64_t max_per_class, float iou_threshold,
                                   int has_score_threshold, float score_threshold, int center_point_box,
                                   int64_t* selected) {
    return non_max_suppression(boxes, scores, batches, classes, num_boxes, max_per_class, iou_threshold,
                               has_score_threshold, score_threshold, center_point_box, selected);
}

int64_t sdflow_compress_count(const bool* condition, int64_t condition_size, int64_t axis_size) {
    return compress_count(condition, condition_size, axis_size);
}

int64_t sdflow_compress_fill(const void* x, const bool* condition, int64_t condition_size, int64_t outer,
                             int64_t axis_size, int64_t inner, int64_t element_size, void* out) {
    compress_fill(static_cast<const char*>(x), condition, condition_size, outer, axis_size, inner, element_size,
                  static_cast<char*>(out));
    return 0;
}

int64_t sdflow_unique(int type_code, const void* x, int64_t outer, int64_t axis_size, int64_t inner, int sorted,
                      int64_t* first, int64_t* inverse, int64_t* counts) {
    SDFLOW_DISPATCH(type_code, return unique_slices(static_cast<const T*>(x), outer, axis_size, inner, sorted, first,
                                                    inverse, counts))
}

}  // extern "C"
