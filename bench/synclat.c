/* The disk's durable-write floor, measured the way Bevan's syncer writes: overwrite a run of pages
 * in a preallocated file (the WAL once it has wrapped) and fdatasync it. Durable creates at 8
 * connections cannot be faster than 8 / (two of these syncs plus the request's CPU path), so this
 * tells an operator, and the benchmark notes, what a disk allows before Bevan is measured.
 *
 *   synclat FILE [ROUNDS]     (FILE is created, 4 MB, and removed; put it on the data disk)
 *
 * Prints, for 1, 8, 38 (one group of ~4 small creates) and 100 pages: the median, p99 and mean of
 * one pwrite+fdatasync; then the same 38 pages with an fstat before each write (what a stat that
 * reads the file's times costs on Linux 6.13+: docs/storage.md, the syncer); then with two
 * busy-looping threads beside it (the CPU shared with a load generator). Not a test. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define SLOTS 10
#define MAX_PAGES 100

static unsigned char buf[MAX_PAGES * PAGE];
static atomic_bool spinning;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *spin(void *arg)
{
    (void)arg;
    volatile unsigned long n = 0;
    while (atomic_load(&spinning)) n++;
    return NULL;
}

/* One line: ROUNDS pwrite+fdatasync of PAGES pages, each at the next of SLOTS places. */
static int measure(int fd, const char *label, int pages, int rounds, int with_fstat)
{
    double *lat = malloc(sizeof *lat * (size_t)rounds), total = 0;
    if (!lat) return -1;
    for (int i = 0; i < rounds; i++) {
        double t0 = now_us();
        struct stat st;
        off_t at = (off_t)(i % SLOTS) * MAX_PAGES * PAGE;
        if ((with_fstat && fstat(fd, &st) != 0) || pwrite(fd, buf, (size_t)pages * PAGE, at) != (ssize_t)pages * PAGE ||
            fdatasync(fd) != 0) {
            free(lat);
            return -1;
        }
        lat[i] = now_us() - t0;
        total += lat[i];
    }
    qsort(lat, (size_t)rounds, sizeof *lat, cmp_double);
    printf("| %s | %d | %.0f | %.0f | %.0f | %.0f |\n", label, pages, lat[rounds / 2], lat[rounds * 99 / 100],
           total / rounds, 1e6 / (total / rounds));
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: synclat FILE [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 2000;
    if (rounds < 100) rounds = 100;
    memset(buf, 0x5a, sizeof buf);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < SLOTS && rc == 0; i++) /* written blocks: later writes only overwrite */
        if (pwrite(fd, buf, sizeof buf, (off_t)i * (off_t)sizeof buf) != (ssize_t)sizeof buf) rc = -1;
    if (rc == 0 && fsync(fd) != 0) rc = -1;
    printf("| case | pages | median µs | p99 µs | mean µs | syncs/s |\n|---|---|---|---|---|---|\n");
    int sizes[] = {1, 8, 38, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes && rc == 0; i++)
        rc = measure(fd, "pwrite + fdatasync", sizes[i], rounds, 0);
    if (rc == 0) rc = measure(fd, "fstat, pwrite + fdatasync", 38, rounds, 1);
    if (rc == 0) {
        pthread_t th[2];
        atomic_store(&spinning, true);
        for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, spin, NULL);
        rc = measure(fd, "pwrite + fdatasync, 2 busy threads beside", 38, rounds, 0);
        atomic_store(&spinning, false);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    }
    close(fd);
    unlink(argv[1]);
    if (rc != 0) perror("synclat");
    return rc == 0 ? 0 : 1;
}
