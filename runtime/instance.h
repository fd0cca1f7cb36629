/* instance — one customer's run through one journey, made durable.
 *
 * An instance is a row (state, history, where it waits); at most a kept
 * coroutine in memory between wakes (a long run stopped on a timer wait,
 * resumed at its next timer wake when the row is exactly where it stopped:
 * instance.c). Every other wake re-runs the journey's `run` from the top
 * in a fresh coroutine; each durable primitive the script calls takes the
 * next entry of the history and returns what was recorded, without acting
 * again (step.c). Past the end of the history the primitive acts for real
 * and appends. So a restart, a crash or a redeploy loses nothing: the next
 * wake replays to where the instance stood. The history is text, a line a
 * step (history.h): a wake reads the lines as its replay goes and writes
 * back the recent ones; older lines are sealed into history_chunks rows.
 *
 * States: waiting (a timer, an event listener or an http_get answer will
 * wake it), done,
 * failed (an error: the message names file:line), converted (its goal event
 * came), exited (the script called exit(reason)).
 *
 * All writes happen in the caller's store transaction; the caller batches
 * many instances into one. */
#ifndef TEND_INSTANCE_H
#define TEND_INSTANCE_H

#include <cjson/cJSON.h>

#include "engine.h"
#include "util.h"

/* Why an instance runs now. */
enum wake_reason { WAKE_START, WAKE_TIMER, WAKE_EVENT, WAKE_FETCH };

/* What a run stopped on. */
enum suspend_kind { SUSPEND_NONE, SUSPEND_WAIT, SUSPEND_WAIT_FOR, SUSPEND_EXIT, SUSPEND_FETCH };

/* The state of the instance being run; engine->cur points here while the
 * coroutine runs, which is how the primitives find it. */
struct run_ctx {
    engine *e;
    int64_t id;
    char *journey, *version, *customer;
    strbuf hist;                /* the history's text (history.h): as read, then what this run added */
    int steps;                  /* entries in hist */
    int pos;                    /* next history entry to replay */
    size_t replay_at;           /* ...and where it starts in hist */
    size_t sealed;              /* hist[0..sealed) is in history_chunks (instance.c) */
    int chunks;                 /* ...in that many rows */
    int hist_rewrite;           /* a sealed line changed: the chunks are written again */
    int hist_partial;           /* hist holds the row's lines only (a kept run: instance.c) */
    int appended;               /* entries added (or completed) in this run */
    tend_time now, started_at;
    enum wake_reason reason;
    const cJSON *event;         /* WAKE_EVENT: the event (type, at, ...) */
    int event_used;             /* a wait_for consumed it */
    int fetch_step;             /* WAKE_FETCH: the pending http_get entry answered... */
    const cJSON *fetched;       /* ...and its result */
    uint64_t rng;               /* random(): reset at each wake, so replays agree */
    cJSON *reads;               /* "customer\x1ffield" -> value read since the last wait */

    enum suspend_kind suspend;
    tend_time wake_at;          /* timer to set (0: none) */
    char *listen_type;          /* wait_for event type, while suspended on it */
    char label[160];            /* where it waits: "wait_for order.delivered (care.lua:12)" */
    char *exit_reason;
    char *fatal;                /* a replay divergence: the instance fails whatever the script does */
    int no_steps;               /* in where() or assign(): run once, never replayed */
    int holdout;                /* -1 undecided, 0 treatment, 1 control */
    int chain;                  /* starts/emits between the outside event and this instance */
    int unstored;               /* a start's first run: the row is written when it stops */
    int sends, emits, starts;   /* live acts in this run (the per-resume limits) */
    char *branch;               /* split{} result */
    int row_cached;             /* a customer handle cached its row in this run (customer_lua.c):
                                   the coroutine is not kept for the next wake (instance.c) */
};

/* Creates an instance of the current version of `journey` for `customer`,
 * with `trigger` (the event or payload; may be NULL) as run's second
 * argument, and runs it at once (`now`) or leaves it for the next due pass.
 * Respects once / reenter_after. Returns the new id, 0 if entry was refused,
 * -1 on error (err filled). */
int64_t instance_start(engine *e, const char *journey, const char *customer, const cJSON *trigger,
                       int run_now, char *err, size_t errlen);

/* The same for many customers and one trigger (a fan-out page, a local-time
 * slot): what instance_start reads of the journey declaration and the
 * printed trigger, done once. init: 0, or -1 with err (no such journey;
 * nothing to free then). start: as instance_start. The starter holds copies,
 * except of `trigger`, which must outlive it; free it with
 * instance_starter_free. Valid while the scripts stay loaded. */
struct instance_starter {
    char *journey, *version, *goal, *trigger;   /* trigger: printed at the first entry */
    const cJSON *trigger_of;
    unsigned trigger_gen;       /* counts the changes of `trigger` (instance.c keeps its text once a page) */
    unsigned trigger_pushed;    /* the trigger_gen a first run pushed as `ev`... */
    unsigned templ_gen;         /* ...and the one `templ` was read from: */
    int templ;                  /* a registry ref to its json_template, LUA_NOREF if it has none */
    int decl;                   /* a registry ref to the declaration of `version` its first runs
                                 * run, LUA_NOREF until the first (instance.c: push_run) */
    int once, run_now;
    tend_time reenter_after, within;
    engine *e;
    int keep;                   /* first runs' rows kept back, written a page at a time */
    struct start_rows *kept;    /* ...these (instance.c) */
    int64_t taken_at;           /* e->ids_taken after this starter's last id */
    int64_t next_id;            /* the id after its last written row (0: none yet) */
    int hold;                   /* instance_starter_hold: the kept page is written only when asked */
};
int instance_starter_init(engine *e, struct instance_starter *st, const char *journey, const cJSON *trigger,
                          int run_now, char *err, size_t errlen);
int64_t instance_starter_start(engine *e, struct instance_starter *st, const char *customer, char *err,
                               size_t errlen);
/* Hands the starter the trigger's text when the caller has it already (the
 * event's body as sent, when it is the same object): then it is not printed.
 * The text must parse to what printing the trigger would give. */
void instance_starter_set_trigger_text(struct instance_starter *st, const char *text);
/* A held starter keeps every first run's row of its page (not KEEP_ROWS
 * of them) until instance_starter_write or _free writes them (still
 * KEEP_ROWS to a statement): first runs that touch nothing else of the
 * store then run without it (a local-time slot's next page, while the last
 * one's commit is in flight: dates.c). write: 0, or -1 on a store error.
 * discard: forgets the kept rows unwritten (their transaction is rolled
 * back). The starter stays usable after either. */
void instance_starter_hold(struct instance_starter *st, int on);
int instance_starter_write(struct instance_starter *st);
void instance_starter_discard(struct instance_starter *st);
/* Writes the rows the starter kept back (its last page of first runs: see
 * instance.c) and frees it; call it before the transaction commits. 0, or
 * -1 on a store error (the caller's transaction must not commit then). */
int instance_starter_free(struct instance_starter *st);

/* Starters kept for a batch of events (event.c), one per journey, so the
 * batch's first runs are written a page at a time across its events.
 * begin: from now on instance_batch_starter hands them out. starter: the
 * batch's starter of `journey`, made at its first use, with `trigger` (the
 * event; its printed `text` when the caller has it, else NULL) as the
 * trigger of its next start; NULL with err when there is no such journey,
 * NULL with err "" when no batch is open (then use a starter of your own).
 * end: writes what they kept and frees them, before the batch commits; 0,
 * or -1 on a store error. */
void instance_batch_begin(engine *e);
struct instance_starter *instance_batch_starter(engine *e, const char *journey, const cJSON *trigger,
                                                const char *text, char *err, size_t errlen);
int instance_batch_end(engine *e);

/* Asks the journey declaration at stack index `decl` whether `customer`
 * may enter for `ev`: calls its when(c, ev) if it has one. 1 yes, 0 no,
 * -1 when() failed (logged; treated as no). */
int instance_admits(engine *e, int decl, const char *journey, const char *customer, const cJSON *ev);

/* Runs instance `id` (woken by a timer, or by `event` for WAKE_EVENT) and
 * stores the outcome. Returns 0, or -1 on a store error. */
int instance_wake(engine *e, int64_t id, enum wake_reason reason, const cJSON *event);

/* Wakes instance `id` with the answer of the http_get recorded as pending
 * at history entry `step` (fetch.c). Returns 0, or -1 on a store error. */
int instance_wake_fetched(engine *e, int64_t id, int step, const cJSON *result);


/* Ends the instance as converted by its goal event `ev` at time `at`; the
 * goal's `value` field of the event (goal = {value = "total"}) is the
 * conversion's revenue. */
int instance_convert(engine *e, int64_t id, tend_time at, const cJSON *ev);

/* Runs every timer due at or before now, up to `max` instances, in one
 * transaction. Returns how many ran, -1 on error. */
int instance_run_due(engine *e, tend_time now, int max);
/* Runs every timer due at or before now, `max` instances to a
 * transaction, until a claim finds none (engine_run_due, outside a
 * transaction): batch after batch, each one's commit (its fsync) on the
 * store's thread while the next one replays, its writes held until that
 * commit succeeded (a failed one fails the next batch too: both are due
 * again). Returns how many ran, all durable, or -1 on error (the batches
 * committed before stay). Inside a transaction, as instance_run_due. */
int instance_drain_due(engine *e, tend_time now, int max);

/* The earliest timer, or -1. */
tend_time instance_next_due(engine *e);

/* Routes an event to the instances listening for it (wait_for, goals). */
int instance_route_event(engine *e, const char *customer, const char *type, tend_time at,
                         const cJSON *event);

/* How many listener rows (wait_for, goals) this engine has written: a
 * caller that found no listener for an event, and sees this unchanged when
 * it would route it, knows instance_route_event has nothing to do. */
unsigned instance_listener_writes(const engine *e);

#endif
