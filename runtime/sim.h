/* sim — t.sim{}: a whole runtime on a virtual clock for journey tests
 * (see docs/lua-api.md, "Testing journeys"). */
#ifndef TEND_SIM_H
#define TEND_SIM_H

#include "sandbox.h"

/* Makes t.sim available to the stdlib of a test file's sandbox; relative
 * script paths given to it are taken from test_dir (the test file's). */
void sim_register(sandbox *sb, const char *test_dir);

#endif
