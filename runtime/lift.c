/* lift — see lift.h. */
#include "lift.h"

#include <math.h>

struct lift_interval lift_wilson(long long x, long long n, double z)
{
    double p = (double)x / (double)n, z2 = z * z, nn = (double)n;
    double centre = (p + z2 / (2 * nn)) / (1 + z2 / nn);
    double half = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / (1 + z2 / nn);
    struct lift_interval w = {centre - half, centre + half};
    if (w.low < 0)
        w.low = 0;
    if (w.high > 1)
        w.high = 1;
    return w;
}

int lift_newcombe(long long x1, long long n1, long long x2, long long n2, double z, double *diff,
                  struct lift_interval *ci)
{
    if (n1 <= 0 || n2 <= 0)
        return -1;
    double p1 = (double)x1 / (double)n1, p2 = (double)x2 / (double)n2;
    struct lift_interval a = lift_wilson(x1, n1, z), b = lift_wilson(x2, n2, z);
    *diff = p1 - p2;
    ci->low = *diff - sqrt((p1 - a.low) * (p1 - a.low) + (b.high - p2) * (b.high - p2));
    ci->high = *diff + sqrt((a.high - p1) * (a.high - p1) + (p2 - b.low) * (p2 - b.low));
    return 0;
}
