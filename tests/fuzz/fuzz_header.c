/* fuzz_header.c: libFuzzer target for the first parsers every datagram meets: the header
 * checks (itr_header_read) and the DATA envelope (itr_envelope_parse). Besides memory safety
 * it checks the parsers' promises: an accepted header re-encodes to the same 16 bytes and
 * satisfies every §2 rule; an accepted envelope lies inside its input, has a valid topic and
 * re-encodes to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <intentra/endpoint.h>

#include "itr_envelope.h"
#include "itr_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_envelope(const uint8_t *pt, size_t len)
{
    const char *topic;
    const uint8_t *body;
    size_t topic_len, body_len;
    if (itr_envelope_parse(pt, len, &topic, &topic_len, &body, &body_len) != 0)
        return;
    if (topic != (const char *)pt + 1 || topic_len < 1 || topic_len > ITR_MAX_TOPIC ||
        body != pt + 1 + topic_len || 1 + topic_len + body_len != len ||
        !itr_topic_valid(topic, topic_len))
        abort();
    static uint8_t again[ITR_MAX_PACKET + 256];
    if (len <= sizeof(again)) {
        size_t n = itr_envelope_write(again, sizeof(again), topic, topic_len, body, body_len);
        if (n != len || memcmp(again, pt, len) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    itr_header h;
    /* The default bound, and a smaller one taken from the input so too_long is reached. */
    size_t bounds[2] = {ITR_MAX_PACKET, size > 0 ? 16 + (size_t)data[size - 1] * 4 : 16};
    for (int b = 0; b < 2; b++) {
        int rc = itr_header_read(data, size, bounds[b], &h);
        if (rc > 0 || rc < -(1 + ITR_DROP_BAD_HEADER))
            abort(); /* only the five header reasons can come out */
        if (rc != 0)
            continue;
        uint8_t again[ITR_HEADER_LEN];
        itr_header_write(again, &h);
        if (memcmp(again, data, ITR_HEADER_LEN) != 0)
            abort();
        if (size < ITR_HEADER_LEN || size > bounds[b] || h.version != ITR_VERSION ||
            h.type > ITR_PT_MAX || h.payload_len != size - ITR_HEADER_LEN || (h.byte1 & 7) != 0 ||
            (h.type != ITR_PT_DATA && h.byte1 != 0) || h.intent > 1)
            abort();
        /* As if the rest were a DATA plaintext (the tag is not there: the parser does not
         * care where its bytes came from). */
        if (h.type == ITR_PT_DATA && size >= ITR_HEADER_LEN + ITR_DATA_MSEQ_LEN)
            check_envelope(data + ITR_HEADER_LEN + ITR_DATA_MSEQ_LEN,
                           size - ITR_HEADER_LEN - ITR_DATA_MSEQ_LEN);
    }
    /* And the whole input as an envelope. */
    check_envelope(data, size);
    return 0;
}
