/* replay — runs a fuzz target's LLVMFuzzerTestOneInput over files, without
 * libFuzzer: `make test` links every fuzz/fuzz_<name>.c with this (gcc, plain
 * and ASan+UBSan) and replays fuzz/corpus/<name>/ and fuzz/regressions/<name>/,
 * so an input that once crashed keeps being tried on machines without clang.
 *   fuzz_<name>_replay FILE...    exit 0 when every input ran */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize(&argc, &argv) != 0)
        return 1;
    int ran = 0;
    for (int i = 1; i < argc; i++) {
        size_t n = 0;
        char *data = util_read_file(argv[i], &n);
        if (!data) {
            perror(argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)data, n);
        free(data);
        ran++;
    }
    printf("replayed %d input%s\n", ran, ran == 1 ? "" : "s");
    return 0;
}
