#include "test_codec.h"

Suite *vectors_suite(void)
{
    Suite *s = suite_create("vectors");
    return s;
}
