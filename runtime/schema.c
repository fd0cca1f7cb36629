/* schema — tend's tables, laid out by how they are read.
 *
 * The hot tables are keyed by their access order (see DESIGN "Targets"):
 * timers by (wake_at, instance) so draining due wakes is a range scan of one
 * B-tree; events append by sequence with no random index on the ingest path
 * (the only secondary index, on `id`, exists for deduplication and is partial,
 * so events without an id pay nothing); listeners by (customer, type) because
 * that is the question every incoming event asks. */
#include "schema.h"

static const char m1_core[] =
    /* Customers: the known fields as columns (segments compile to SQL on
     * them), everything else in attrs (JSON). */
    "CREATE TABLE customers ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " name TEXT, phone TEXT, email TEXT, city TEXT, region TEXT,"
    " timezone TEXT, birthday TEXT, attrs TEXT,"
    " first_seen_at INTEGER, first_order_at INTEGER, last_order_at INTEGER,"
    " orders_count INTEGER NOT NULL DEFAULT 0,"
    " total_spent REAL NOT NULL DEFAULT 0,"
    " last_active_at INTEGER, lifecycle TEXT,"
    " r INTEGER, f INTEGER, m INTEGER,"
    " blocked INTEGER NOT NULL DEFAULT 0,"
    " updated_at INTEGER"
    ") WITHOUT ROWID;"
    "CREATE INDEX customers_city ON customers(city, last_order_at);"
    "CREATE INDEX customers_last_order ON customers(last_order_at);"
    "CREATE INDEX customers_region ON customers(region);"

    "CREATE TABLE customer_tags ("
    " customer TEXT NOT NULL, tag TEXT NOT NULL,"
    " PRIMARY KEY (customer, tag)) WITHOUT ROWID;"
    "CREATE INDEX customer_tags_tag ON customer_tags(tag);"
    /* channel '*' suppresses every channel */
    "CREATE TABLE suppressions ("
    " customer TEXT NOT NULL, channel TEXT NOT NULL, at INTEGER, reason TEXT,"
    " PRIMARY KEY (customer, channel)) WITHOUT ROWID;"

    /* Events: accepted (committed) before they are answered, processed later
     * in seq order; meta.events_cursor is the last processed seq. */
    "CREATE TABLE events ("
    " seq INTEGER PRIMARY KEY,"
    " id TEXT, type TEXT NOT NULL, customer TEXT, at INTEGER NOT NULL,"
    " body TEXT NOT NULL, received_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX events_id ON events(id) WHERE id IS NOT NULL;"

    /* Script versions, by content hash: instances pin the one they began on. */
    "CREATE TABLE scripts ("
    " hash TEXT PRIMARY KEY NOT NULL, path TEXT NOT NULL, source TEXT NOT NULL,"
    " loaded_at INTEGER) WITHOUT ROWID;"

    /* Journey instances. history is the JSON list of recorded steps; it lives
     * in the row because every wake reads all of it anyway. */
    "CREATE TABLE instances ("
    " id INTEGER PRIMARY KEY,"
    " journey TEXT NOT NULL, version TEXT NOT NULL, customer TEXT NOT NULL,"
    " state TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0, label TEXT,"
    " wake_at INTEGER, listen TEXT, started_at INTEGER NOT NULL, ended_at INTEGER,"
    " converted_at INTEGER, holdout INTEGER, branch TEXT,"
    " trigger TEXT, history TEXT NOT NULL DEFAULT '[]',"
    " error TEXT, seed INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE timers ("
    " wake_at INTEGER NOT NULL, instance INTEGER NOT NULL,"
    " PRIMARY KEY (wake_at, instance)) WITHOUT ROWID;"
    /* kind 0: a wait_for, 1: a goal; until: when it stops listening */
    "CREATE TABLE listeners ("
    " customer TEXT NOT NULL, type TEXT NOT NULL, instance INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, until INTEGER,"
    " PRIMARY KEY (customer, type, instance, kind)) WITHOUT ROWID;"
    /* who entered which journey, for `once` and `reenter_after` */
    "CREATE TABLE entries ("
    " journey TEXT NOT NULL, customer TEXT NOT NULL,"
    " count INTEGER NOT NULL, last_at INTEGER NOT NULL,"
    " PRIMARY KEY (journey, customer)) WITHOUT ROWID;"
    /* broadcast events reach their audience in resumable batches */
    "CREATE TABLE fanouts ("
    " event INTEGER NOT NULL, journey TEXT NOT NULL, after TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (event, journey)) WITHOUT ROWID;"
    "CREATE TABLE date_triggers ("
    " journey TEXT NOT NULL, customer TEXT NOT NULL, fire_at INTEGER NOT NULL,"
    " PRIMARY KEY (journey, customer)) WITHOUT ROWID;"
    "CREATE INDEX date_triggers_due ON date_triggers(fire_at);"

    /* Outbox: written in the same transaction as the step that sends;
     * outbox_due holds the rows still to deliver, by when. */
    "CREATE TABLE outbox ("
    " id INTEGER PRIMARY KEY,"
    " instance INTEGER, step INTEGER, journey TEXT, customer TEXT NOT NULL,"
    " channel TEXT NOT NULL, template TEXT, category TEXT NOT NULL,"
    " priority INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL,"
    " status TEXT NOT NULL, due_at INTEGER, created_at INTEGER NOT NULL,"
    " sent_at INTEGER, attempts INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT, response TEXT, segments INTEGER, cost REAL,"
    " idem_key TEXT NOT NULL);"
    "CREATE INDEX outbox_customer ON outbox(customer, due_at);"
    "CREATE TABLE outbox_due ("
    " due_at INTEGER NOT NULL, id INTEGER NOT NULL,"
    " PRIMARY KEY (due_at, id)) WITHOUT ROWID;"

    "CREATE TABLE coupons ("
    " code TEXT PRIMARY KEY NOT NULL, customer TEXT NOT NULL, journey TEXT,"
    " instance INTEGER, value REAL, spec TEXT, issued_at INTEGER,"
    " expires_at INTEGER, redeemed_at INTEGER) WITHOUT ROWID;"
    "CREATE TABLE tasks ("
    " id INTEGER PRIMARY KEY, customer TEXT NOT NULL, journey TEXT,"
    " instance INTEGER, step INTEGER, assignee TEXT, note TEXT,"
    " status TEXT NOT NULL DEFAULT 'open', created_at INTEGER NOT NULL);"

    "CREATE TABLE schedules ("
    " name TEXT PRIMARY KEY NOT NULL, spec TEXT NOT NULL, next_at INTEGER,"
    " last_run_at INTEGER, runs INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE schedule_runs ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL, slot INTEGER NOT NULL,"
    " ran_at INTEGER NOT NULL, status TEXT NOT NULL, error TEXT);";

/* What the first deliveries, task kinds and lifecycle sweeps needed. */
static const char m2_delivery[] =
    /* the row's due_at in outbox_due while it is there: leaving the queue
     * is a key lookup, not a scan */
    "ALTER TABLE outbox ADD COLUMN due_key INTEGER;"
    "UPDATE outbox SET due_key = (SELECT due_at FROM outbox_due WHERE outbox_due.id = outbox.id);"
    "ALTER TABLE tasks ADD COLUMN kind TEXT;"
    /* customers who never ordered age by first_seen_at (customer_sweep) */
    "CREATE INDEX IF NOT EXISTS customers_first_seen ON customers(first_seen_at) WHERE last_order_at IS NULL;";

/* --- branch calendar: local-time triggers and anniversary bookkeeping --- */
static const char m_calendar[] =
    /* local_cron / holiday triggers: one row per (journey, customer zone)
     * with the zone's next slot; `after` is the fan-out's resume point (the
     * last customer id started for the slot). zone '' holds the customers
     * with no zone. */
    "CREATE TABLE local_triggers ("
    " journey TEXT NOT NULL, zone TEXT NOT NULL, fire_at INTEGER NOT NULL,"
    " after TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (journey, zone)) WITHOUT ROWID;"
    "CREATE INDEX local_triggers_due ON local_triggers(fire_at);"
    /* a zone's customers in id order: the fan-out's page is a range scan */
    "CREATE INDEX IF NOT EXISTS customers_timezone ON customers(timezone);"
    /* the last firing, so a late = hours(n) re-plan never fires it twice */
    "ALTER TABLE date_triggers ADD COLUMN last_fired INTEGER;"
    /* best_time(): how many of a customer's events fell in each local hour */
    "CREATE TABLE activity_hours ("
    " customer TEXT NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (customer, hour)) WITHOUT ROWID;"
    /* messages a cap deferred when they were queued (tend simulate's contact
     * load): the reason in last_error is cleared once they are sent */
    "CREATE TABLE cap_deferrals (message INTEGER PRIMARY KEY, reason TEXT NOT NULL);"
    "CREATE TRIGGER outbox_cap_deferred AFTER INSERT ON outbox"
    " WHEN NEW.status = 'deferred' AND NEW.last_error LIKE '% cap of %' BEGIN"
    " INSERT OR IGNORE INTO cap_deferrals (message, reason) VALUES (NEW.id, NEW.last_error); END;";
/* --- end branch calendar --- */

/* ---- branch orders: order lines, per-customer bought facts, products ---- */
/* Order lines, stored when an order event is processed (never on the raw
 * ingest path). Clustered by customer: every question asked of them is about
 * one customer (c:bought within, runs_out_at, c:items, a windowed at_least),
 * so no secondary index. An order's lines are stored once, by its order id. */
static const char m_orders_items[] =
    "CREATE TABLE order_items ("
    " customer TEXT NOT NULL, order_id TEXT NOT NULL, line INTEGER NOT NULL,"
    " sku TEXT NOT NULL, category TEXT, name TEXT, qty REAL NOT NULL, price REAL,"
    " at INTEGER NOT NULL,"
    " PRIMARY KEY (customer, order_id, line)) WITHOUT ROWID;"
    /* The narrow table the bought filter reads: one row per customer and sku
     * (kind 0) or category (kind 1); orders: how many orders had the key.
     * Keyed by customer first, so the facts of one order share pages (and
     * c:bought is one lookup); bought_recent (kind, key, last_at, orders)
     * is what a segment walks: only the customers who bought that key,
     * `within` a range of it, `at_least` read from the index itself. */
    "CREATE TABLE bought ("
    " kind INTEGER NOT NULL, key TEXT NOT NULL, customer TEXT NOT NULL,"
    " orders INTEGER NOT NULL, qty REAL NOT NULL, first_at INTEGER NOT NULL,"
    " last_at INTEGER NOT NULL,"
    " PRIMARY KEY (customer, kind, key)) WITHOUT ROWID;"
    "CREATE INDEX bought_recent ON bought(kind, key, last_at, orders);"
    /* The optional catalog. related: a JSON array of skus. */
    "CREATE TABLE products ("
    " sku TEXT PRIMARY KEY NOT NULL, name TEXT, category TEXT, price REAL,"
    " usage_days REAL, related TEXT, updated_at INTEGER) WITHOUT ROWID;";
/* ---- end branch orders ---- */

/* --- branch sandbox: start/emit chains ---------------------------------
 * How many starts and emits separate an instance or an emitted event from
 * the outside event that began the chain (limits.chain). */
static const char m_sandbox_chain[] =
    "ALTER TABLE instances ADD COLUMN chain INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN chain INTEGER NOT NULL DEFAULT 0;";
/* --- end of branch sandbox ---------------------------------------------- */

/* --- branch netcrash: asynchronous http_get ---------------------------- */
/* http_get requests a journey waits for: the pending history entry `step`
 * (0-based) of `instance`. A row leaves in the transaction that stores the
 * answer into the instance; one left by a crash is asked again. */
static const char m_netcrash_fetches[] =
    "CREATE TABLE fetches ("
    " instance INTEGER NOT NULL, step INTEGER NOT NULL, url TEXT NOT NULL,"
    " since INTEGER NOT NULL,"
    " PRIMARY KEY (instance, step)) WITHOUT ROWID;";
/* --- end branch netcrash ------------------------------------------------ */

/* --- branch loop: closing the loop (tasks with outcomes, coupons redeemed,
 * receipts, conversion values) --- */
static const char m_loop[] =
    "ALTER TABLE tasks ADD COLUMN outcome TEXT;"
    "ALTER TABLE tasks ADD COLUMN closed_note TEXT;"
    "ALTER TABLE tasks ADD COLUMN due_at INTEGER;"
    "ALTER TABLE tasks ADD COLUMN done_at INTEGER;"
    "CREATE INDEX tasks_status ON tasks(status, id);"
    "CREATE INDEX tasks_assignee ON tasks(assignee, status, id);"
    "CREATE INDEX tasks_customer ON tasks(customer, id);"
    "ALTER TABLE coupons ADD COLUMN starts_at INTEGER;"
    "ALTER TABLE coupons ADD COLUMN min_spend REAL;"
    "ALTER TABLE coupons ADD COLUMN order_id TEXT;"
    "CREATE INDEX coupons_customer ON coupons(customer, issued_at);"
    /* why an order's code was not redeemed */
    "CREATE TABLE coupon_refusals ("
    " code TEXT NOT NULL, customer TEXT NOT NULL, order_id TEXT, at INTEGER NOT NULL, reason TEXT NOT NULL);"
    "CREATE INDEX coupon_refusals_customer ON coupon_refusals(customer, at);"
    /* what became of a message after it left, from receipts */
    "ALTER TABLE outbox ADD COLUMN delivered_at INTEGER;"
    "ALTER TABLE outbox ADD COLUMN opened_at INTEGER;"
    "ALTER TABLE outbox ADD COLUMN clicked_at INTEGER;"
    "ALTER TABLE outbox ADD COLUMN replied_at INTEGER;"
    "ALTER TABLE outbox ADD COLUMN failed_at INTEGER;"
    "ALTER TABLE outbox ADD COLUMN unsubscribed_at INTEGER;"
    "ALTER TABLE outbox ADD COLUMN receipt_reason TEXT;"
    "CREATE INDEX outbox_key ON outbox(idem_key);"
    /* a fallback's attempt on the next channel: the message's first attempt */
    "ALTER TABLE outbox ADD COLUMN attempt_of INTEGER;"
    /* the revenue a conversion brought (goal.value) */
    "ALTER TABLE instances ADD COLUMN conversion_value REAL;"
    /* a customer's events and instances, for the timeline */
    "CREATE INDEX instances_customer ON instances(customer, id);"
    "CREATE INDEX events_customer ON events(customer, seq) WHERE customer IS NOT NULL;"
    /* the goal's event type, so reports know a journey has one without its script */
    "ALTER TABLE instances ADD COLUMN goal TEXT;";

/* --- branch scale: store-size indexes and retention ----------------------
 * A tag + last-order segment over 10M customers reads one index: each tag
 * row carries its customer's last_order_at (kept equal by the triggers),
 * so a count is a range of customer_tags_tag_order (tag, last_order_at) and
 * a page in id order a range of customer_tags_tag (tag, customer,
 * last_order_at): one index read, never a customer row.
 * scripts.seen_pass: the last pass of the retention sweep that saw a waiting
 * instance on the version (retention.c), so loading scripts never scans
 * the instances. */
static const char m_scale[] =
    "ALTER TABLE customer_tags ADD COLUMN last_order_at INTEGER;"
    "UPDATE customer_tags SET last_order_at ="
    " (SELECT c.last_order_at FROM customers c WHERE c.id = customer_tags.customer);"
    "DROP INDEX IF EXISTS customer_tags_tag;"
    "CREATE INDEX customer_tags_tag ON customer_tags(tag, customer, last_order_at);"
    "CREATE INDEX customer_tags_tag_order ON customer_tags(tag, last_order_at);"
    "CREATE TRIGGER customer_tags_order_new AFTER INSERT ON customer_tags BEGIN"
    " UPDATE customer_tags SET last_order_at ="
    " (SELECT c.last_order_at FROM customers c WHERE c.id = NEW.customer)"
    " WHERE customer = NEW.customer AND tag = NEW.tag; END;"
    "CREATE TRIGGER customers_order_tags AFTER UPDATE OF last_order_at ON customers"
    " WHEN NEW.last_order_at IS NOT OLD.last_order_at BEGIN"
    " UPDATE customer_tags SET last_order_at = NEW.last_order_at WHERE customer = NEW.id; END;"
    "CREATE TRIGGER customers_order_tags_new AFTER INSERT ON customers"
    " WHEN NEW.last_order_at IS NOT NULL BEGIN"
    " UPDATE customer_tags SET last_order_at = NEW.last_order_at WHERE customer = NEW.id; END;"
    "ALTER TABLE scripts ADD COLUMN seen_pass INTEGER;";
/* --- end branch scale ---------------------------------------------------- */

/* --- branch wake: histories read and appended, not rewritten ----------
 * instances.history holds the recent steps, one line each (history.h);
 * older lines move here in sealed chunks (seq 0, 1, ...) that are written
 * once, so a wake of a long journey writes a short row, not its whole past.
 * Older JSON histories stay in instances.history until their next wake
 * converts them. */
static const char m_wake_history_chunks[] =
    "CREATE TABLE history_chunks ("
    " instance INTEGER NOT NULL, seq INTEGER NOT NULL, lines TEXT NOT NULL);"
    "CREATE UNIQUE INDEX history_chunks_key ON history_chunks(instance, seq);"
    "CREATE TRIGGER instances_history_chunks_gone AFTER DELETE ON instances BEGIN"
    " DELETE FROM history_chunks WHERE instance = OLD.id; END;";
/* --- end branch wake ---------------------------------------------------- */

/* --- branch tick: gauges kept as work happens --------------------------- */
/* /metrics reads tend_instances and tend_outbox from these small tables
 * instead of counting the big ones at every scrape. Triggers keep them in
 * the transaction of every change of an instance's state or a message's
 * status, whichever module makes it, so they are exact after a crash. A row
 * that falls to 0 stays (/metrics leaves it out). Created from one count of
 * what the store already holds. */
static const char m_tick_counts[] =
    "CREATE TABLE instance_counts ("
    " journey TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (journey, state)) WITHOUT ROWID;"
    "INSERT INTO instance_counts SELECT journey, state, COUNT(*) FROM instances GROUP BY journey, state;"
    "CREATE TABLE outbox_counts (status TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO outbox_counts SELECT status, COUNT(*) FROM outbox GROUP BY status;"
    "CREATE TRIGGER instance_counts_insert AFTER INSERT ON instances BEGIN"
    " INSERT INTO instance_counts VALUES (NEW.journey, NEW.state, 1)"
    " ON CONFLICT (journey, state) DO UPDATE SET n = n + 1; END;"
    "CREATE TRIGGER instance_counts_update AFTER UPDATE OF journey, state ON instances"
    " WHEN OLD.journey IS NOT NEW.journey OR OLD.state IS NOT NEW.state BEGIN"
    " UPDATE instance_counts SET n = n - 1 WHERE journey = OLD.journey AND state = OLD.state;"
    " INSERT INTO instance_counts VALUES (NEW.journey, NEW.state, 1)"
    " ON CONFLICT (journey, state) DO UPDATE SET n = n + 1; END;"
    "CREATE TRIGGER instance_counts_delete AFTER DELETE ON instances BEGIN"
    " UPDATE instance_counts SET n = n - 1 WHERE journey = OLD.journey AND state = OLD.state; END;"
    "CREATE TRIGGER outbox_counts_insert AFTER INSERT ON outbox BEGIN"
    " INSERT INTO outbox_counts VALUES (NEW.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1; END;"
    "CREATE TRIGGER outbox_counts_update AFTER UPDATE OF status ON outbox"
    " WHEN OLD.status IS NOT NEW.status BEGIN"
    " UPDATE outbox_counts SET n = n - 1 WHERE status = OLD.status;"
    " INSERT INTO outbox_counts VALUES (NEW.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1; END;"
    "CREATE TRIGGER outbox_counts_delete AFTER DELETE ON outbox BEGIN"
    " UPDATE outbox_counts SET n = n - 1 WHERE status = OLD.status; END;";
/* --- end branch tick ---------------------------------------------------- */

/* --- branch wake2: a tag insert is one row write --------------------------
 * customer_tag() writes a tag row with its customer's last_order_at, so the
 * AFTER INSERT trigger only has work for an insert that left it out (or got
 * it wrong): its WHEN skips the UPDATE that rewrote the row and both tag
 * indexes on every c:tag (a third of a wake that tags). */
static const char m_wake2_tag_insert[] =
    "DROP TRIGGER customer_tags_order_new;"
    "CREATE TRIGGER customer_tags_order_new AFTER INSERT ON customer_tags"
    " WHEN NEW.last_order_at IS NOT (SELECT c.last_order_at FROM customers c WHERE c.id = NEW.customer) BEGIN"
    " UPDATE customer_tags SET last_order_at ="
    " (SELECT c.last_order_at FROM customers c WHERE c.id = NEW.customer)"
    " WHERE customer = NEW.customer AND tag = NEW.tag; END;";
/* --- end branch wake2 ---------------------------------------------------- */

/* --- branch bought3: every bought form from an index at 10M customers ----
 * bought_counts: how many customers have a fact for each key, so bought =
 * { key } and not_(bought{ key }) alone count in one lookup (a range of 4M
 * index entries per category at 10M customers took 600 ms). The writer of
 * facts adds its new ones per key (orderline: one row per key of a batch;
 * an insert trigger cost 4.6 us a fact); the triggers keep it right for a
 * fact deleted or moved. prev_at: the time of the latest order with the key but one (NULL
 * while orders = 1), so "two orders with the key within the window" is
 * prev_at >= since; bought_repeat, partial on orders >= 2 (a fact written
 * once is never in it), is what at_least walks: at_least = 2 with within is
 * the index alone, a larger at_least counts the lines of the few customers
 * it leaves. */
static const char m_bought3_forms[] =
    "ALTER TABLE bought ADD COLUMN prev_at INTEGER;"
    "UPDATE bought SET prev_at = (SELECT o.at FROM (SELECT i.order_id, MAX(i.at) AS at FROM order_items i"
    " WHERE i.customer = bought.customer"
    " AND (CASE bought.kind WHEN 0 THEN i.sku ELSE i.category END) = bought.key"
    " GROUP BY i.order_id) o ORDER BY o.at DESC LIMIT 1 OFFSET 1) WHERE orders >= 2;"
    "CREATE INDEX bought_repeat ON bought(kind, key, orders, prev_at) WHERE orders >= 2;"
    "CREATE TABLE bought_counts (kind INTEGER NOT NULL, key TEXT NOT NULL, customers INTEGER NOT NULL,"
    " PRIMARY KEY (kind, key)) WITHOUT ROWID;"
    "INSERT INTO bought_counts SELECT kind, key, COUNT(*) FROM bought GROUP BY kind, key;"
    "CREATE TRIGGER bought_counts_delete AFTER DELETE ON bought BEGIN"
    " UPDATE bought_counts SET customers = customers - 1 WHERE kind = OLD.kind AND key = OLD.key; END;"
    "CREATE TRIGGER bought_counts_update AFTER UPDATE OF kind, key ON bought"
    " WHEN OLD.kind IS NOT NEW.kind OR OLD.key IS NOT NEW.key BEGIN"
    " UPDATE bought_counts SET customers = customers - 1 WHERE kind = OLD.kind AND key = OLD.key;"
    " INSERT INTO bought_counts VALUES (NEW.kind, NEW.key, 1)"
    " ON CONFLICT (kind, key) DO UPDATE SET customers = customers + 1; END;";
/* --- end branch bought3 -------------------------------------------------- */

/* --- branch long4: history chunks clustered by instance -----------------
 * A replay reads an instance's chunks in (instance, seq) order: as a rowid
 * table each chunk was an index probe and then a rowid lookup on a page of
 * its own (chunks of all instances interleave in insert order); WITHOUT
 * ROWID keeps an instance's chunks side by side in key order. The rows are
 * copied over (a store of the wake branch's form opens and migrates). */
static const char m_long4_chunks_clustered[] =
    "CREATE TABLE history_chunks_copy AS SELECT instance, seq, lines FROM history_chunks;"
    "DROP TABLE history_chunks;"
    "CREATE TABLE history_chunks ("
    " instance INTEGER NOT NULL, seq INTEGER NOT NULL, lines TEXT NOT NULL,"
    " PRIMARY KEY (instance, seq)) WITHOUT ROWID;"
    "INSERT INTO history_chunks SELECT instance, seq, lines FROM history_chunks_copy;"
    "DROP TABLE history_chunks_copy;";
/* --- end branch long4 ---------------------------------------------------- */

/* --- branch deliv5: a delivery's two status moves counted per batch -----
 * The two moves every delivered message makes, queued -> sending at its
 * claim and sending -> sent at its result, are counted by their writers
 * (outbox_claim_many, outbox_mark_sent_many: one outbox_counts statement a
 * batch) instead of by this trigger row by row (two statements a row, a
 * tenth of a delivery's instructions). The trigger knows those writes by
 * their due_key: a claim moves it to the lease, a sent mark clears it (the
 * row left outbox_due). Every other status change, by tend or by hand,
 * is counted here as before. */
static const char m_deliv5_counts[] =
    "DROP TRIGGER outbox_counts_update;"
    "CREATE TRIGGER outbox_counts_update AFTER UPDATE OF status ON outbox"
    " WHEN OLD.status IS NOT NEW.status"
    " AND NOT (OLD.status = 'queued' AND NEW.status = 'sending' AND NEW.due_key IS NOT OLD.due_key)"
    " AND NOT (OLD.status = 'sending' AND NEW.status = 'sent' AND OLD.due_key IS NOT NULL AND NEW.due_key IS NULL)"
    " BEGIN"
    " UPDATE outbox_counts SET n = n - 1 WHERE status = OLD.status;"
    " INSERT INTO outbox_counts VALUES (NEW.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1; END;";
/* --- end branch deliv5 --------------------------------------------------- */

/* --- branch wake6: an instance's end counted by its writer ---------------
 * The move every finished instance makes, waiting -> done / failed /
 * exited, written with its label set to that state and its ended_at set,
 * is counted by its writer (instance.c: write_ended, one instance_counts
 * statement per journey and state of a due batch; persist, one for an
 * instance that ends outside a batch) instead of by this trigger row by
 * row (two statements a row, the most of a due batch's ended-rows UPDATE).
 * Every other state change, by tend (a conversion, a cancel) or by hand,
 * is counted here as before. The states are an OR, not IN (...): a trigger
 * builds an IN list's ephemeral table each time it runs, which cost more
 * than the counting it saves (3.0 us a row more, measured). */
static const char m_wake6_counts[] =
    "DROP TRIGGER instance_counts_update;"
    "CREATE TRIGGER instance_counts_update AFTER UPDATE OF journey, state ON instances"
    " WHEN (OLD.journey IS NOT NEW.journey OR OLD.state IS NOT NEW.state)"
    " AND NOT (OLD.journey IS NEW.journey AND OLD.state = 'waiting'"
    " AND (NEW.state = 'done' OR NEW.state = 'failed' OR NEW.state = 'exited')"
    " AND NEW.label IS NEW.state AND NEW.ended_at IS NOT NULL)"
    " BEGIN"
    " UPDATE instance_counts SET n = n - 1 WHERE journey = OLD.journey AND state = OLD.state;"
    " INSERT INTO instance_counts VALUES (NEW.journey, NEW.state, 1)"
    " ON CONFLICT (journey, state) DO UPDATE SET n = n + 1; END;";
/* --- end branch wake6 ---------------------------------------------------- */

/* --- branch start7: a customer without a city, region or order writes no
 * entry for them -----------------------------------------------------------
 * A customer an event creates (unknown_customers = "create") has no city,
 * region or last order: in full indexes it still got an entry in each
 * (city, last_order_at), (last_order_at) and (region), three of the six
 * B-tree writes of its INSERT. Partial on IS NOT NULL, those rows write
 * nothing until the column is set. Every query that reads these indexes
 * names the column with = ? / IN (...) / BETWEEN / a range / IS NOT NULL
 * (segment conditions, customer_sweep, anniversary fields), which implies
 * IS NOT NULL, so SQLite still uses them (test_segment's index plans).
 * customers_timezone stays full: timezone IS NULL is the default zone's
 * audience (dates.c reads it through that index). */
static const char m_start7_partial_indexes[] =
    "DROP INDEX customers_city;"
    "CREATE INDEX customers_city ON customers(city, last_order_at) WHERE city IS NOT NULL;"
    "DROP INDEX customers_last_order;"
    "CREATE INDEX customers_last_order ON customers(last_order_at) WHERE last_order_at IS NOT NULL;"
    "DROP INDEX customers_region;"
    "CREATE INDEX customers_region ON customers(region) WHERE region IS NOT NULL;";
/* --- end branch start7 --------------------------------------------------- */

/* --- branch add8: a start counted by its writer ---------------------------
 * A journey's first runs are written in pages of up to 64 rows a statement
 * (instance.c: write_rows), and each row fired instance_counts_insert, an
 * UPSERT of the count a row (measured: a tenth of an event that starts and
 * parks). Those rows now carry counted = 1 and are counted by their writer,
 * one instance_counts statement per state of a page; the trigger counts
 * every other insert (counted NULL: tend's other starts, an import, by
 * hand) as before. Its WHEN still runs for each row (SQLite enters the
 * trigger's program, and a multi-row INSERT into a table with a row trigger
 * stages its rows in an ephemeral table first), so the UPSERT is what this
 * saves. A row inserted by hand with counted set is taken for one tend
 * counted: leave it NULL. */
static const char m_add8_start_counts[] =
    "ALTER TABLE instances ADD COLUMN counted INTEGER;"
    "DROP TRIGGER instance_counts_insert;"
    "CREATE TRIGGER instance_counts_insert AFTER INSERT ON instances WHEN NEW.counted IS NULL BEGIN"
    " INSERT INTO instance_counts VALUES (NEW.journey, NEW.state, 1)"
    " ON CONFLICT (journey, state) DO UPDATE SET n = n + 1; END;";
/* --- end branch add8 ----------------------------------------------------- */

const struct store_migration schema_migrations[] = {
    {"core", m1_core},
    {"delivery", m2_delivery},
    {"calendar", m_calendar},
    {"orders", m_orders_items},   /* branch orders */
    {"sandbox_chain", m_sandbox_chain},   /* branch sandbox */
    {"fetches", m_netcrash_fetches},   /* branch netcrash */
    {"loop", m_loop},
    {"scale", m_scale},   /* branch scale */
    {"wake_history_chunks", m_wake_history_chunks},   /* branch wake */
    {"tick_counts", m_tick_counts},   /* branch tick */
    {"wake2_tag_insert", m_wake2_tag_insert},   /* branch wake2 */
    {"bought3_forms", m_bought3_forms},   /* branch bought3 */
    {"long4_chunks_clustered", m_long4_chunks_clustered},   /* branch long4 */
    {"deliv5_counts", m_deliv5_counts},   /* branch deliv5 */
    {"wake6_counts", m_wake6_counts},   /* branch wake6 */
    {"start7_partial_indexes", m_start7_partial_indexes},   /* branch start7 */
    {"add8_start_counts", m_add8_start_counts},   /* branch add8 */
};
const int schema_migration_count = sizeof schema_migrations / sizeof schema_migrations[0];
