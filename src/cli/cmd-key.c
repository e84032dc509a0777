/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cli.h"

static int run(CliContext *ctx, int argc, char **argv)
{
        return EXIT_FAILED;
}

const CliCommand cmd_key = {
        .name = "key",
        .summary = "not yet",
        .run = run,
};
