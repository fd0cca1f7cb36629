/* skeleton — the files of `tend new journey` (see skeleton.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "skeleton.h"
#include "util.h"

/* @NAME@ stands for the journey's name. */
static const char JOURNEY[] =
    "-- @NAME@: what this journey does, and for whom. Written by `tend new journey\n"
    "-- @NAME@`; edit it, then run `tend test` (its test is @NAME@_test.lua) and\n"
    "-- `tend check` (typos, unknown templates, SMS length). Reference:\n"
    "-- docs/lua-api.md; step by step: docs/guide.md.\n"
    "\n"
    "-- The message. \"marketing\" obeys quiet hours and caps; \"transactional\"\n"
    "-- (order updates) does not. One text per channel; {{ field | default: 'x' }} is\n"
    "-- filled from the customer or from the vars send() passes.\n"
    "template \"@NAME@\" {\n"
    "  category = \"marketing\",\n"
    "  sms = \"{{ name | default: 'friend' }}, thank you for your order! Here is {{offer}} for the next one.\",\n"
    "}\n"
    "\n"
    "journey \"@NAME@\" {\n"
    "  on = \"order.paid\",        -- the event type that starts it\n"
    "  once = true,               -- at most once per customer, ever\n"
    "  -- who may enter: c is the customer after the event was applied\n"
    "  when = function(c) return c.orders_count >= 1 end,\n"
    "  -- the journey itself; c is the customer, ev the event that started it\n"
    "  run = function(c, ev)\n"
    "    wait(days(1))            -- durable: a restart does not lose it\n"
    "    send(\"sms\", c, \"@NAME@\", { offer = \"10% off\" })\n"
    "  end,\n"
    "}\n";

static const char TEST[] =
    "-- The test of @NAME@.lua: a whole tend on a simulated clock (t.sim). Run it\n"
    "-- with `tend test`; a failure prints the assertion and what went wrong in\n"
    "-- the journey (its error at file:line, the warnings it logged).\n"
    "local t = require \"tend.test\"\n"
    "\n"
    "local function sim()\n"
    "  -- script paths are relative to this file\n"
    "  local s = t.sim{ scripts = { \"@NAME@.lua\" }, start = \"2026-03-02T10:00:00+08:00\",\n"
    "                   config = { timezone = \"Asia/Shanghai\" } }\n"
    "  s:customer{ id = \"c1\", name = \"Ann\", phone = \"+8613800000001\" }\n"
    "  return s\n"
    "end\n"
    "\n"
    "t.case(\"@NAME@: a message the day after the first order\", function()\n"
    "  local s = sim()\n"
    "  s:event{ type = \"order.paid\", customer = \"c1\", total = 99 }\n"
    "  t.eq(#s:messages{ template = \"@NAME@\" }, 0, \"nothing on the first day\")\n"
    "  s:advance(days(1))\n"
    "  local sent = s:sent{ template = \"@NAME@\" }   -- the messages that left\n"
    "  t.eq(#sent, 1)\n"
    "  t.match(sent[1].body, \"Ann, thank you\")\n"
    "end)\n"
    "\n"
    "t.case(\"@NAME@: once per customer\", function()\n"
    "  local s = sim()\n"
    "  s:event{ type = \"order.paid\", customer = \"c1\", total = 99 }\n"
    "  s:advance(days(2))\n"
    "  s:event{ type = \"order.paid\", customer = \"c1\", total = 20 }\n"
    "  s:advance(days(2))\n"
    "  t.eq(#s:sent{ template = \"@NAME@\" }, 1)\n"
    "end)\n";

int skeleton_valid_name(const char *name)
{
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z')))
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return strlen(name) <= 64;
}

static char *fill(const char *text, const char *name)
{
    strbuf b;
    strbuf_init(&b);
    for (const char *p = text; *p;) {
        const char *at = strstr(p, "@NAME@");
        if (!at) {
            strbuf_puts(&b, p);
            break;
        }
        strbuf_add(&b, p, (size_t)(at - p));
        strbuf_puts(&b, name);
        p = at + 6;
    }
    return strbuf_take(&b);
}

/* Creates path with text; refuses an existing file. */
static int write_new(const char *path, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, errno == EEXIST ? "exists already (nothing was written)" : strerror(errno));
        return -1;
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int rc = close(fd);
    if (n != (ssize_t)len || rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        unlink(path);
        return -1;
    }
    return 0;
}

int skeleton_journey(const char *dir, const char *name, char **written, char *err, size_t errlen)
{
    if (!skeleton_valid_name(name)) {
        snprintf(err, errlen, "'%s' is not a journey name (a letter, then letters, digits or '_')", name);
        return -1;
    }
    char *file = xasprintf("%s.lua", name), *test_file = xasprintf("%s_test.lua", name);
    char *path = util_path_join(dir, file), *test_path = util_path_join(dir, test_file);
    free(file);
    free(test_file);
    char *journey = fill(JOURNEY, name), *test = fill(TEST, name);
    int rc = -1;
    if (access(path, F_OK) == 0 || access(test_path, F_OK) == 0) {
        snprintf(err, errlen, "%s: exists already (nothing was written)", access(path, F_OK) == 0 ? path : test_path);
    } else if (write_new(path, journey, err, errlen) == 0) {
        if (write_new(test_path, test, err, errlen) == 0)
            rc = 0;
        else
            unlink(path);
    }
    free(journey);
    free(test);
    if (rc == 0 && written) {
        written[0] = path;
        written[1] = test_path;
    } else {
        free(path);
        free(test_path);
    }
    return rc;
}
