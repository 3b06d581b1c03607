/*
 * replay_main.c — a main() for any libFuzzer target, built with any
 * compiler: runs LLVMFuzzerTestOneInput once on every regular file in the
 * directory given as argv[1] (like running the fuzzer on its corpus without
 * mutating). CMake links it with each tests/fuzz/fuzz_X.c as fuzz_X_replay
 * and ctest runs it on tests/fuzz/corpus/fuzz_X/, so every crash input once
 * added to the corpus stays a regression test.
 *
 * A missing or empty directory is not an error (prints that 0 inputs ran).
 * Exit status: 0 when every input ran, 1 on a read error or bad usage; a
 * crashing input crashes this process, after its path has been printed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional, as in libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file into an exact-size heap block (so AddressSanitizer
 * catches a read one byte past the input). */
static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    *data = exact;
    *size = len;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 1;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    const char *dir = argv[1];
    DIR *d = opendir(dir);
    if (!d) {
        printf("%s: no corpus at %s (%s); 0 inputs run\n", argv[0], dir, strerror(errno));
        return 0;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *names);
            if (!p) {
                fprintf(stderr, "%s: out of memory\n", argv[0]);
                return 1;
            }
            names = p;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) {
            fprintf(stderr, "%s: out of memory\n", argv[0]);
            return 1;
        }
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);

    size_t ran = 0;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        size_t plen = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(plen);
        if (!path) {
            fprintf(stderr, "%s: out of memory\n", argv[0]);
            return 1;
        }
        snprintf(path, plen, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        uint8_t *data;
        size_t size;
        if (read_file(path, &data, &size) != 0) {
            fprintf(stderr, "%s: cannot read %s: %s\n", argv[0], path, strerror(errno));
            failed = 1;
            free(path);
            continue;
        }
        /* Said before running, so a crash names its input. */
        fprintf(stderr, "running %s (%zu bytes)\n", path, size);
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        free(path);
        ran++;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    printf("%s: %zu inputs run from %s\n", argv[0], ran, dir);
    return failed;
}
