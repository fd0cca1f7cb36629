/* task — follow-up work for staff: a call, a visit.
 *
 * task(c, {note = "...", assign = rule, kind = "call"}) stores an open task.
 * The assignee comes from the rule: a name, a list (round-robin, the turn
 * kept in the store so it survives restarts), or a function(c) returning a
 * name (run once, when the task is made; never replayed). Tasks are listed
 * by `tend status`, GET /v1/tasks and sim:tasks{}. */
#ifndef TEND_TASK_H
#define TEND_TASK_H

#include <lua.h>

#include "engine.h"

/* Creates a task; pushes {id, assignee}. spec: index of the spec (0: none). */
int task_create(engine *e, lua_State *L, const char *journey, int64_t instance, int step,
                const char *customer, int spec, char *err, size_t errlen);

#endif
