/* filesink — the file channel: messages as JSON lines, written exactly once.
 *
 * A delivery pass appends its lines, then (before its transaction commits)
 * flushes and fsyncs the file and records the file's identity and length in
 * the store, in that same transaction. So the committed length always covers
 * exactly the lines of committed deliveries. After a crash, the first use of
 * the file in the new process cuts it back to the recorded length: lines
 * written by a pass that never committed go, and that pass's messages, still
 * queued, are written again once. A file rotated away (another inode) or cut
 * shorter by its reader is left as it is.
 *
 * The open files belong to the engine (e->files); filesink_close() closes
 * them. */
#ifndef TEND_FILESINK_H
#define TEND_FILESINK_H

#include "engine.h"

/* Appends `line` and a newline to the file at `path` (relative to the
 * engine's directory). 0, or -1 with err. */
int filesink_append(engine *e, const char *path, const char *line, char *err, size_t errlen);

/* Makes the appended lines durable and records the lengths (inside the
 * caller's transaction). 0, or -1 with err. */
int filesink_sync(engine *e, char *err, size_t errlen);

/* The pass failed and rolls back: its lines go too. */
void filesink_discard(engine *e);

void filesink_close(engine *e);

#endif
