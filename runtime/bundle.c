/* bundle — lookup in the embedded module table (see bundle.h). */
#include <string.h>

#include "bundle.h"

const struct bundle_module *bundle_find(const char *name)
{
    for (const struct bundle_module *m = bundle_modules; m->name; m++)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}
