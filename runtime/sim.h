/* sim — t.sim{}: a whole runtime on a virtual clock for journey tests
 * (see docs/lua-api.md, "Testing journeys"). */
#ifndef TEND_SIM_H
#define TEND_SIM_H

#include "sandbox.h"

/* Makes t.sim available to the stdlib of a test file's sandbox. */
void sim_register(sandbox *sb);

#endif
