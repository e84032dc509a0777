/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What /proc/self/smaps says of the mapping that holds an address: whether it was given
 * MADV_HUGEPAGE ("hg" among its VmFlags). For the tests of hf_mem_hint_huge() and its users.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Whether this kernel has transparent huge pages at all (madvise() refuses the hint if not). */
static inline bool smaps_have_thp(void)
{
        return access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
}

/* 1 when the mapping holding p is advised huge pages, 0 when not, -1 when none holds p. */
static inline int smaps_huge_advised(const void *p)
{
        FILE *f = fopen("/proc/self/smaps", "re");
        uintptr_t a = (uintptr_t)p;
        char line[512];
        bool inside = false;
        int found = -1;

        if (!f)
                return -1;
        while (found < 0 && fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                char dash;

                if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-') {
                        inside = a >= lo && a < hi;
                        continue;
                }
                if (inside && strncmp(line, "VmFlags:", 8) == 0)
                        found = strstr(line + 8, " hg") != NULL;
        }
        fclose(f);
        return found;
}
