/* schema — the ordered list of migrations that builds tend's database.
 *
 * Migrations only ever get appended: a database records how many it has run
 * (meta.schema_version) and store_open() runs the rest, each in its own
 * transaction. Editing a shipped migration would leave old databases on a
 * different schema than new ones. */
#ifndef TEND_SCHEMA_H
#define TEND_SCHEMA_H

#include "store.h"

extern const struct store_migration schema_migrations[];
extern const int schema_migration_count;

#endif
