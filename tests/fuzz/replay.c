/* SPDX-License-Identifier: MIT */
/*
 * Plain driver for libFuzzer targets: runs LLVMFuzzerTestOneInput() once
 * over every regular file in the directories (or files) named on the
 * command line, so the corpus is a regression test without libFuzzer.
 * Exits 1 if an argument cannot be read or nothing was replayed; a
 * failing input aborts inside the target.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

/* Read a whole file; returns 0 or -1. */
static int
run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0;
    size_t cap = 0;

    if (fp == NULL) {
        perror(path);
        return -1;
    }
    for (;;) {
        size_t n;

        if (len == cap) {
            uint8_t *nb;

            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(fp);
                return -1;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(fp)) {
        perror(path);
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    /* An exact-size copy, so ASan catches reads past the input. */
    {
        uint8_t *exact = malloc(len ? len : 1);

        memcpy(exact, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    return 0;
}

int
main(int argc, char **argv)
{
    int count = 0;
    int errors = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *de;

        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            errors++;
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            errors += run_file(argv[i]) < 0;
            count++;
            continue;
        }
        d = opendir(argv[i]);
        if (d == NULL) {
            perror(argv[i]);
            errors++;
            continue;
        }
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            int n;

            if (de->d_name[0] == '.') {
                continue;
            }
            n = snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (n < 0 || (size_t)n >= sizeof(path)) {
                errors++;
                continue;
            }
            if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
                continue;
            }
            errors += run_file(path) < 0;
            count++;
        }
        closedir(d);
    }
    printf("replayed %d inputs, %d errors\n", count, errors);
    return (errors == 0 && count > 0) ? 0 : 1;
}
