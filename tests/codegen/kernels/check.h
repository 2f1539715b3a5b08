// CHECK(condition) for the kernels' unit tests: prints the failed condition and counts it in `failures`.
#pragma once

#include <cstdio>

static int failures = 0;

#define CHECK(cond)                                                                                   \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            ++failures;                                                                               \
        }                                                                                             \
    } while (0)
