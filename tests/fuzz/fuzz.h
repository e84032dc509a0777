/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared bits of the fuzz targets. Each target treats its input as hostile bytes, frees
 * everything it allocates, prints nothing, and aborts only when a property it checks is broken
 * (libFuzzer and the replay driver both report an abort as a failure).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A broken invariant: say which (the only output a target ever makes), then abort so that
 * libFuzzer saves the input and the replay test fails.
 */
#define FUZZ_CHECK(x)                                                                              \
        do {                                                                                       \
                if (!(x)) {                                                                        \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);      \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)
