/*
 * e2e_delete_topics: deletes the throwaway topics of one end-to-end test run, so that
 * repeated runs do not pile up topics on the test broker.
 *
 *   e2e_delete_topics <bootstrap-servers> <topic>...
 *
 * Exit 0 when every topic was deleted, 1 (naming the topic and the reason) otherwise.
 * Blocks for at most 15 s per topic: test tear-down only.
 */
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "kafka_conf.h"
#include "test_kafka_admin.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: e2e_delete_topics <bootstrap-servers> <topic>...\n");
        return 2;
    }
    char errstr[512];
    rd_kafka_conf_t *conf = kafka_conf_new(argv[1], NULL, errstr, sizeof(errstr));
    if (!conf) {
        fprintf(stderr, "e2e_delete_topics: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "e2e_delete_topics: %s\n", errstr);
        return 1;
    }
    /* conf is now owned by rk */
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        if (test_kafka_delete_topic(rk, argv[i], 15000, errstr, sizeof(errstr)) < 0) {
            fprintf(stderr, "e2e_delete_topics: %s: %s\n", argv[i], errstr);
            rc = 1;
        }
    }
    rd_kafka_destroy(rk);
    return rc;
}
