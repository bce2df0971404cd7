/*
 * kafka_delivery: what a delivery report proves (kafka_delivery.h).
 */
#include "kafka_delivery.h"

bool kafka_delivery_written(const rd_kafka_message_t *rkmessage)
{
    /* An acks=all acknowledgement from the broker always carries the offset it wrote at; the
     * reports librdkafka makes up for messages it did not see acknowledged carry none. */
    return rkmessage->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
           rd_kafka_message_status(rkmessage) == RD_KAFKA_MSG_STATUS_PERSISTED && rkmessage->offset >= 0;
}
