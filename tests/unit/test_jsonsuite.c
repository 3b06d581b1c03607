/*
 * test_jsonsuite.c — JSONTestSuite conformance of the JSON parser
 * (Nicolas Seriot's test_parsing files, from the shared data directory).
 *
 * Every y_* file must be accepted and every n_* file rejected. The i_*
 * files are implementation-defined: each one is listed in the table below
 * with what KoruDelta does (docs/JSON.md explains why), and a file on disk
 * missing from the table fails the test so the table stays complete. For
 * every accepted file the canonical form must be a fixed point.
 *
 * The data lives outside the repository: $KORU_SHARED_DATA, else
 * KD_SOURCE_DIR/../shared/data. Without it the test prints SKIP and passes.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "json/json.h"
#include "korudelta.h"
#include "util/buf.h"

#ifndef KD_SOURCE_DIR
#define KD_SOURCE_DIR "."
#endif

/* What we do with each implementation-defined file (1 = accept). */
static const struct {
    const char *name;
    int accept;
} i_table[] = {
    /* Numbers: integers are kept exactly at any length; non-integers that
     * overflow a double are refused, ones that underflow become 0.0. */
    {"i_number_double_huge_neg_exp.json", 1},
    {"i_number_huge_exp.json", 0},
    {"i_number_neg_int_huge_exp.json", 0},
    {"i_number_pos_double_huge_exp.json", 0},
    {"i_number_real_neg_overflow.json", 0},
    {"i_number_real_pos_overflow.json", 0},
    {"i_number_real_underflow.json", 1},
    {"i_number_too_big_neg_int.json", 1},
    {"i_number_too_big_pos_int.json", 1},
    {"i_number_very_big_negative_int.json", 1},
    /* Lone or broken surrogate escapes are refused. */
    {"i_object_key_lone_2nd_surrogate.json", 0},
    {"i_string_1st_surrogate_but_2nd_missing.json", 0},
    {"i_string_1st_valid_surrogate_2nd_invalid.json", 0},
    {"i_string_incomplete_surrogate_and_escape_valid.json", 0},
    {"i_string_incomplete_surrogate_pair.json", 0},
    {"i_string_incomplete_surrogates_escape_valid.json", 0},
    {"i_string_invalid_lonely_surrogate.json", 0},
    {"i_string_invalid_surrogate.json", 0},
    {"i_string_inverted_surrogates_U+1D11E.json", 0},
    {"i_string_lone_second_surrogate.json", 0},
    /* Invalid UTF-8 anywhere is refused; only UTF-8 input is JSON. */
    {"i_string_UTF-16LE_with_BOM.json", 0},
    {"i_string_UTF-8_invalid_sequence.json", 0},
    {"i_string_UTF8_surrogate_U+D800.json", 0},
    {"i_string_invalid_utf-8.json", 0},
    {"i_string_iso_latin_1.json", 0},
    {"i_string_lone_utf8_continuation_byte.json", 0},
    {"i_string_not_in_unicode_range.json", 0},
    {"i_string_overlong_sequence_2_bytes.json", 0},
    {"i_string_overlong_sequence_6_bytes.json", 0},
    {"i_string_overlong_sequence_6_bytes_null.json", 0},
    {"i_string_truncated-utf-8.json", 0},
    {"i_string_utf16BE_no_BOM.json", 0},
    {"i_string_utf16LE_no_BOM.json", 0},
    /* Structure: 500 levels is within the 512 limit; a leading UTF-8 BOM
     * is skipped. */
    {"i_structure_500_nested_arrays.json", 1},
    {"i_structure_UTF-8_BOM_empty_object.json", 1},
};

static char dir[4096];
static int have_data;

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    kd__buf b = KD__BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (kd__buf_append(&b, chunk, n))
            abort();
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        kd__buf_free(&b);
        return -1;
    }
    /* An exact-size copy, so AddressSanitizer sees any read past the end. */
    *len = b.len;
    *data = malloc(b.len ? b.len : 1);
    if (!*data)
        abort();
    if (b.len)
        memcpy(*data, b.data, b.len);
    kd__buf_free(&b);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular files in dir. */
static char **list_files(size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 512;
            names = realloc(names, cap * sizeof *names);
            if (!names)
                abort();
        }
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, *n, sizeof *names, by_name);
    return names;
}

/* Canonicalize data; on success also check the fixed point. Returns 1 if
 * accepted, 0 if rejected; *fixed is 0 when an accepted file's canonical
 * form is not a fixed point. */
static int run_one(const char *data, size_t len, char *err, size_t errlen, int *fixed)
{
    kd__buf a = KD__BUF_INIT, b = KD__BUF_INIT;
    *fixed = 1;
    int rc = kd__json_canonicalize(data, len, &a, err, errlen);
    if (rc == KD_OK) {
        char err2[256];
        int rc2 = kd__json_canonicalize(a.data, a.len, &b, err2, sizeof err2);
        if (rc2 != KD_OK || a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
            *fixed = 0;
            snprintf(err, errlen, "not a fixed point (%s)", rc2 ? err2 : "output differs");
        }
    } else if (rc != KD_EINVALID) {
        fprintf(stderr, "  unexpected status %d (%s)\n", rc, err);
    }
    kd__buf_free(&a);
    kd__buf_free(&b);
    return rc == KD_OK;
}

static void test_suite(void)
{
    size_t n = 0;
    char **names = list_files(&n);
    CHECK(names != NULL);
    size_t counts[3] = {0, 0, 0}, failures = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i];
        size_t nl = strlen(name);
        if (nl < 5 || strcmp(name + nl - 5, ".json") != 0 || name[1] != '_')
            continue;
        int want;
        const char *why;
        if (name[0] == 'y') {
            want = 1, why = "y_ must be accepted";
            counts[0]++;
        } else if (name[0] == 'n') {
            want = 0, why = "n_ must be rejected";
            counts[1]++;
        } else if (name[0] == 'i') {
            want = -1;
            for (size_t k = 0; k < sizeof i_table / sizeof *i_table; k++)
                if (strcmp(i_table[k].name, name) == 0)
                    want = i_table[k].accept;
            if (want < 0) {
                fprintf(stderr, "  %s: not in the i_ table of test_jsonsuite.c (and docs/JSON.md)\n", name);
                failures++;
                continue;
            }
            why = want ? "i_ table says accept" : "i_ table says reject";
            counts[2]++;
        } else {
            continue;
        }
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        char *data;
        size_t len;
        if (read_file(path, &data, &len)) {
            fprintf(stderr, "  %s: cannot read: %s\n", name, strerror(errno));
            failures++;
            continue;
        }
        char err[512] = "";
        int fixed;
        int got = run_one(data, len, err, sizeof err, &fixed);
        free(data);
        if (got != want) {
            fprintf(stderr, "  %s: %s, but it was %s%s%s\n", name, why, got ? "accepted" : "rejected",
                    got ? "" : ": ", got ? "" : err);
            failures++;
        } else if (!fixed) {
            fprintf(stderr, "  %s: %s\n", name, err);
            failures++;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    fprintf(stderr, "    %zu y_, %zu n_, %zu i_ files; %zu failures\n", counts[0], counts[1], counts[2], failures);
    CHECK(counts[0] > 0 && counts[1] > 0);
    CHECK_EQ_INT(failures, 0);
}

/* Every table entry names a file that exists (a renamed upstream file is
 * noticed). */
static void test_table_entries_exist(void)
{
    int missing = 0;
    for (size_t k = 0; k < sizeof i_table / sizeof *i_table; k++) {
        char path[8192];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, i_table[k].name);
        if (stat(path, &st) != 0) {
            fprintf(stderr, "  %s: in the table but not on disk\n", i_table[k].name);
            missing++;
        }
    }
    CHECK_EQ_INT(missing, 0);
}

int main(void)
{
    const char *base = getenv("KORU_SHARED_DATA");
    if (base && *base)
        snprintf(dir, sizeof dir, "%s/JSONTestSuite/test_parsing", base);
    else
        snprintf(dir, sizeof dir, "%s/../shared/data/JSONTestSuite/test_parsing", KD_SOURCE_DIR);
    struct stat st;
    have_data = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    if (!have_data) {
        printf("SKIP: JSONTestSuite not found at %s\n", dir);
        return 0;
    }
    fprintf(stderr, "JSONTestSuite: %s\n", dir);
    RUN(test_suite);
    RUN(test_table_entries_exist);
    return HARNESS_DONE();
}
