/* sim — t.sim{}: a whole runtime on a virtual clock for journey tests
 * (see docs/lua-api.md, "Testing journeys"). */
#ifndef TEND_SIM_H
#define TEND_SIM_H

#include "coverage.h"
#include "sandbox.h"
#include "util.h"

/* Makes t.sim available to the stdlib of a test file's sandbox; relative
 * script paths given to it are taken from test_dir (the test file's). With
 * cov, every sim counts the lines its scripts run (tend test --coverage). */
void sim_register(sandbox *sb, const char *test_dir, coverage *cov);

/* A case begins: from now on sim_diagnose reports what goes wrong in the
 * test file's sims (made before the case or during it), not what went
 * wrong before. L is the test file's state. */
void sim_case_begin(lua_State *L);

/* Appends, as TAP 13 YAML lines each starting with `indent`, the instances
 * that failed (journey, customer, error; up to 20 a sim) and the warn/error
 * log lines (up to 40 a sim) of the open sims since the current case
 * began. Appends nothing when none. */
void sim_diagnose(lua_State *L, strbuf *yaml, const char *indent);

#endif
