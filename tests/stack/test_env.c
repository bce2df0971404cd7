#include "test_env.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

const char *test_env_require(const char *name)
{
    const char *value = getenv(name);

    if (value == NULL || value[0] == '\0')
        ck_abort_msg("%s is not set: run the tests through tests/run, or point the shell at a stack with "
                     "`deploy/local/stack up && eval \"$(deploy/local/stack env)\"`",
                     name);
    return value;
}

void test_env_unique_name(const char *prefix, char *out, size_t out_size)
{
    struct timeval now;
    unsigned seed;

    gettimeofday(&now, NULL);
    /* pid and microseconds already separate runs; the random part separates two
     * names taken by one process in the same microsecond. */
    seed = (unsigned)now.tv_usec ^ ((unsigned)getpid() << 16);
    snprintf(out, out_size, "%s-%ld-%lld%06ld-%04x", prefix, (long)getpid(), (long long)now.tv_sec,
             (long)now.tv_usec, (unsigned)rand_r(&seed) & 0xffff);
}
