/* SPDX-License-Identifier: MIT */
/*
 * Plain driver for a libFuzzer target: runs every file named on the
 * command line (directories: every file inside) through
 * LLVMFuzzerTestOneInput.  TAP: one line per input.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0) {
        tap_ok(false, "read %s", path);
        if (f != NULL) {
            fclose(f);
        }
        return;
    }
    rewind(f);
    buf = malloc((size_t)len + 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        tap_ok(false, "read %s", path);
    } else {
        LLVMFuzzerTestOneInput(buf, (size_t)len);
        tap_ok(true, "%s (%ld bytes)", path, len);
    }
    free(buf);
    fclose(f);
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        struct stat st;
        struct dirent **ents;
        int n;

        if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            run_file(argv[i]);
            continue;
        }
        n = scandir(argv[i], &ents, NULL, alphasort);
        for (int k = 0; k < n; k++) {
            char path[4096];

            if (ents[k]->d_name[0] != '.') {
                snprintf(path, sizeof(path), "%s/%s", argv[i], ents[k]->d_name);
                run_file(path);
            }
            free(ents[k]);
        }
        if (n >= 0) {
            free(ents);
        }
    }
    return tap_done();
}
