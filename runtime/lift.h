/* lift — how sure a measured difference of two conversion rates is.
 *
 * A leaf of arithmetic only. A journey's treatment group converts x1 of n1,
 * its holdout x2 of n2; the lift is p1 - p2 with a 95% interval by
 * Newcombe's hybrid score method (his method 10, built from each group's
 * Wilson score interval). It keeps to [-1, 1], stays sensible at rates of 0
 * or 1 and at small groups, where the textbook normal interval does not. */
#ifndef TEND_LIFT_H
#define TEND_LIFT_H

#define LIFT_Z95 1.959963984540054

struct lift_interval {
    double low, high;
};

/* Wilson's score interval of x successes in n trials (n > 0). */
struct lift_interval lift_wilson(long long x, long long n, double z);

/* p1 - p2 and its interval into *diff, *ci. -1 (nothing written) when a
 * group is empty. */
int lift_newcombe(long long x1, long long n1, long long x2, long long n2, double z, double *diff,
                  struct lift_interval *ci);

#endif
