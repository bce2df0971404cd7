/*
 * test_env: the connection settings that integration tests take from the
 * environment, as printed by `deploy/local/stack env` (tests/run exports them).
 *
 * A missing variable is a failure, not a skip: an integration suite that skips
 * quietly when the stack is absent would pass without testing anything.
 */
#ifndef PROFILED_TEST_ENV_H
#define PROFILED_TEST_ENV_H

#include <stddef.h>

/* The value of NAME; fails the running Check test, naming NAME, when unset or empty. */
const char *test_env_require(const char *name);

/* A name unique to this process and moment, "<prefix>-<pid>-<usec>-<random>", for
 * topics, groups and tables that must not collide with earlier or parallel runs. */
void test_env_unique_name(const char *prefix, char *out, size_t out_size);

#endif
