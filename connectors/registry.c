/* registry.c: the connector types a sink's "type" may name. */
#include <string.h>

#include "connector.h"

extern const gw_connector gw_file_connector;
extern const gw_connector gw_null_connector;
extern const gw_connector gw_kafka_connector;   /* connectors/kafka/kafka_sink.c */
extern const gw_connector gw_webhook_connector; /* connectors/http/webhook_sink.c */
extern const gw_connector gw_redis_connector;   /* connectors/redis/redis_sink.c */

static const gw_connector *const connectors[] = {
    &gw_file_connector,    &gw_null_connector,  &gw_kafka_connector,
    &gw_webhook_connector, &gw_redis_connector,
};

const gw_connector *gw_connector_find(const char *type)
{
    if (!type)
        return NULL;
    for (size_t i = 0; i < sizeof(connectors) / sizeof(connectors[0]); i++) {
        if (!strcmp(connectors[i]->type, type))
            return connectors[i];
    }
    return NULL;
}

int gw_sink_run_until(itr_loop *loop, uint64_t deadline_ns)
{
    uint64_t now = itr_now_ns();
    if (now >= deadline_ns)
        return ITR_ERR_WOULDBLOCK;
    uint64_t wait_ms = (deadline_ns - now + 999999) / 1000000;
    return itr_loop_run_once(loop, (int)(wait_ms > 100 ? 100 : wait_ms)) < 0 ? ITR_ERR_IO : 0;
}

const char *gw_connector_types(void)
{
    return "file, null, kafka, webhook, redis";
}
