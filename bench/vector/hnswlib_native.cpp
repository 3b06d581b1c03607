// hnswlib_native.cpp — optional second peer of the vector benchmark: hnswlib
// (Debian's libhnswlib-dev headers) compiled by run.py with -O3
// -march=native, so its distance functions use the CPU's AVX, as a build
// from source would. Debian's python3-hnswlib module is compiled for
// baseline x86-64 (SSE only); this shows what the same library does
// natively. Reads run.py's data file, prints one JSON object. Times are
// the thread's CPU time, as in kd_bench_vector.c.
//
//   hnswlib_native DATA M EF_CONSTRUCTION ROUNDS EF[,EF...] INDEX build|reuse
//
// build: builds the index, saves it to INDEX, measures the searches;
// reuse: loads INDEX and measures the searches only.
#include <hnswlib/hnswlib.h>

#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

// CPU time of this thread, as kd_bench_vector measures (see there).
static double now() {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 8 || (strcmp(argv[7], "build") && strcmp(argv[7], "reuse"))) {
        fprintf(stderr, "usage: hnswlib_native DATA M EF_CONSTRUCTION ROUNDS EF[,EF...] INDEX build|reuse\n");
        return 2;
    }
    bool reuse = strcmp(argv[7], "reuse") == 0;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 1;
    char magic[8];
    uint32_t h[6];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "KDVBENCH", 8) || fread(h, 4, 6, f) != 6) return 1;
    uint32_t n = h[1], dim = h[2], nq = h[3], k = h[4], metric = h[5];
    std::vector<float> base((size_t)n * dim), q((size_t)nq * dim);
    std::vector<uint32_t> gt((size_t)nq * k);
    if (fread(base.data(), 4, base.size(), f) != base.size() || fread(q.data(), 4, q.size(), f) != q.size() ||
        fread(gt.data(), 4, gt.size(), f) != gt.size())
        return 1;
    fclose(f);
    if (metric == 0) {  // cosine: normalize, then inner product (what the Python module does)
        for (uint32_t i = 0; i < n; i++) {
            double s = 0;
            for (uint32_t j = 0; j < dim; j++) s += (double)base[(size_t)i * dim + j] * base[(size_t)i * dim + j];
            float inv = (float)(1.0 / std::sqrt(s));
            for (uint32_t j = 0; j < dim; j++) base[(size_t)i * dim + j] *= inv;
        }
    }
    hnswlib::SpaceInterface<float> *space;
    if (metric == 2)
        space = new hnswlib::L2Space(dim);
    else
        space = new hnswlib::InnerProductSpace(dim);
    int M = atoi(argv[2]), efc = atoi(argv[3]), rounds = atoi(argv[4]);
    hnswlib::HierarchicalNSW<float> *index;
    if (reuse) {
        index = new hnswlib::HierarchicalNSW<float>(space, std::string(argv[6]));
        printf("{\"reused\": true, \"search\": [");
    } else {
        index = new hnswlib::HierarchicalNSW<float>(space, n, M, efc, 100);
        double t0 = now();
        for (uint32_t i = 0; i < n; i++) index->addPoint(base.data() + (size_t)i * dim, i);
        double build = now() - t0;
        index->saveIndex(argv[6]);
        FILE *sf = fopen(argv[6], "rb");
        long fsize = 0;
        if (sf) {
            fseek(sf, 0, SEEK_END);
            fsize = ftell(sf);
            fclose(sf);
        }
        printf("{\"build_seconds\": %.3f, \"file_bytes\": %ld, \"file_bytes_per_vector\": %.1f, \"search\": [", build,
               fsize, (double)fsize / n);
    }
    const char *p = argv[5];
    int first = 1;
    while (*p) {
        size_t ef = strtoul(p, (char **)&p, 10);
        if (*p == ',') p++;
        index->setEf(ef < k ? k : ef);
        double best = 1e300;
        size_t hits = 0;
        for (int r = 0; r < rounds; r++) {
            hits = 0;
            double t = now();
            for (uint32_t i = 0; i < nq; i++) {
                auto res = index->searchKnn(q.data() + (size_t)i * dim, k);
                std::set<uint32_t> truth(gt.begin() + (size_t)i * k, gt.begin() + (size_t)(i + 1) * k);
                while (!res.empty()) {
                    hits += truth.count((uint32_t)res.top().second);
                    res.pop();
                }
            }
            double dt = now() - t;
            if (dt < best) best = dt;
        }
        printf("%s{\"ef\": %zu, \"qps\": %.1f, \"recall\": %.4f}", first ? "" : ", ", ef, nq / best,
               (double)hits / ((double)nq * k));
        first = 0;
    }
    printf("]}\n");
    delete index;
    delete space;
    return 0;
}
