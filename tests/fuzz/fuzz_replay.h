/* fuzz_replay.h: the loop of the fuzz targets' standalone *_replay mains (built without
 * libFuzzer): every file named on the command line runs once through LLVMFuzzerTestOneInput. */
#ifndef FUZZ_REPLAY_H
#define FUZZ_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Returns how many inputs were replayed, -1 when a file cannot be opened. */
static int fuzz_replay_files(int argc, char **argv)
{
    static uint8_t buf[1 << 20];
    for (int a = 1; a < argc; a++) {
        FILE *fp = fopen(argv[a], "rb");
        if (!fp) {
            perror(argv[a]);
            return -1;
        }
        size_t len = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        LLVMFuzzerTestOneInput(buf, len);
    }
    return argc - 1;
}

#endif
