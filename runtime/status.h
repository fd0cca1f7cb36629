/* status — what is happening: journeys, instances by state and by step,
 * conversions, sends and their cost, the outbox, channels; per journey its
 * experiment groups (everyone, treatment and holdout, each split arm: entered,
 * converted, rate, revenue, revenue per entrant, cost, and lift against the
 * holdout with a 95% interval — lift.h), its coupons issued and redeemed;
 * staff tasks per assignee. A journey whose instances have no goal shows no
 * conversion figures.
 *
 * One report, two faces: status_report() builds it as JSON (GET /v1/journeys)
 * and status_print() writes it for people (`tend status`). The report reads
 * the store only; it works with or without the scripts loaded. */
#ifndef TEND_STATUS_H
#define TEND_STATUS_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "engine.h"

/* The whole report (caller frees), or NULL on a store error. */
cJSON *status_report(engine *e);

/* One journey's part of the report (caller frees): the object, a JSON null
 * when no instance of it exists, NULL on a store error. */
cJSON *status_journey(engine *e, const char *name);

/* Writes one journey's conversions, experiment groups with their lift, and
 * coupons (the journey object of the report) as indented text lines. */
void status_print_outcomes(const cJSON *journey, FILE *out);

/* Writes the report as text. */
void status_print(const cJSON *report, FILE *out);

#endif
