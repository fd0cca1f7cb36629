/* schedule — recurring script code: `schedule "name" { cron = ..., run = fn }`.
 *
 * Each schedule has a row with its next fire time. When that time has come
 * the run function runs once, in one transaction with everything it starts,
 * and the next time is computed after now: a server that was down for three
 * slots runs the schedule once when it comes back, not three times. The
 * virtual clock visits every slot, so a simulated month runs each one. Runs
 * are recorded in schedule_runs (when, and whether it failed). */
#ifndef TEND_SCHEDULE_H
#define TEND_SCHEDULE_H

#include "engine.h"

/* Runs the schedules due at or before now. Returns how many ran, -1 on a
 * store error. */
int schedule_run_due(engine *e, tend_time now);
tend_time schedule_next_due(engine *e);

#endif
