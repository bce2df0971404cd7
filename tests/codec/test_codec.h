/* The codec's Check suites, one constructor per file; test_codec.c runs them all. */
#ifndef PROFILED_TEST_CODEC_H
#define PROFILED_TEST_CODEC_H

#include <check.h>

Suite *codec_suite(void);
Suite *vectors_suite(void);
Suite *json_write_suite(void);
Suite *differential_suite(void);

#endif
