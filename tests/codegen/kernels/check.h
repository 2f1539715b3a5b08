// CHECK(condition) for the kernels' unit tests: prints the failed condition and counts it in `failures`. Variadic,
// so a condition may hold the commas of template arguments.
#pragma once

#include <cstdio>

static int failures = 0;

#define CHECK(...)                                                              \
    do {                                                                        \
        if (!(__VA_ARGS__)) {                                                   \
            std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #__VA_ARGS__); \
            ++failures;                                                         \
        }                                                                       \
    } while (0)
