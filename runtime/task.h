/* task — follow-up work for staff: a call, a visit; and its outcome.
 *
 * task(c, {note = "...", assign = rule, kind = "call", due = days(2)})
 * stores an open task, due `due` seconds from now when given.
 * The assignee comes from the rule: a name, a list (round-robin, the turn
 * kept in the store so it survives restarts), or a function(c) returning a
 * name (run once, when the task is made; never replayed). Tasks are listed
 * by `tend status`, GET /v1/tasks and sim:tasks{}. */
#ifndef TEND_TASK_H
#define TEND_TASK_H

#include <cjson/cJSON.h>
#include <lua.h>

#include "engine.h"

/* Creates a task; pushes {id, assignee}. spec: index of the spec (0: none). */
int task_create(engine *e, lua_State *L, const char *journey, int64_t instance, int step,
                const char *customer, int spec, char *err, size_t errlen);

/* A task closes once: open → done | failed | cancelled, with an outcome and
 * a note, at now. Closing emits the event `task.<status>` for the task's
 * customer (fields task, kind, outcome, assignee, journey), so wait_task(),
 * goals and journeys see it. Runs in the caller's transaction. */
enum task_close_result { TASK_CLOSED_NOW = 0, TASK_NOT_FOUND, TASK_ALREADY_CLOSED, TASK_BAD_REQUEST,
                         TASK_STORE_ERROR };
enum task_close_result task_close(engine *e, int64_t id, const char *status, const char *outcome,
                                  const char *note, char *err, size_t errlen);

/* The task as JSON {id, customer, journey, assignee, kind, note, status,
 * outcome, created_at, due_at, done_at, overdue}, or NULL when there is none.
 * Caller frees. */
cJSON *task_get(engine *e, int64_t id);

/* A page of tasks in id order, after id `after` (0: from the start), at
 * most `limit`: {"tasks": [...], "next": id of the last one or null when
 * the page is the end}. Filters may be NULL; status "all" (or NULL) is every
 * status; overdue: open and past due. Caller frees. */
struct task_filter {
    const char *status, *assignee, *customer;
    int overdue;
};
cJSON *task_page(engine *e, const struct task_filter *f, int64_t after, int limit);

/* Per assignee: open, done, failed, cancelled, overdue and the median
 * seconds from creation to close. {"assignees": [{assignee, ...}]}. Caller
 * frees. */
cJSON *task_summary(engine *e);

/* Registers wait_task(t, {timeout = s}) → the task once closed, or nil. */
void task_register(engine *e);

#endif
