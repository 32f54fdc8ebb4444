/* itr_wire.c: the 16-byte header codec (PROTOCOL.md §2). */
#include "itr_wire.h"

uint8_t *itr_header_write(uint8_t *p, const itr_header *h)
{
    p[0] = (uint8_t)(((h->version & 0x0fu) << 4) | (h->type & 0x0fu));
    p[1] = (uint8_t)(h->byte1 | ((h->intent & 0x03u) << ITR_B1_INTENT_SHIFT) |
                     ((h->priority & ITR_B1_PRIORITY_MASK) << ITR_B1_PRIORITY_SHIFT));
    uint8_t *q = itr_put_u16(p + 2, h->payload_len);
    q = itr_put_u32(q, h->conn_id);
    q = itr_put_u32(q, h->seq);
    return itr_put_u32(q, h->ack);
}

int itr_header_read(const uint8_t *pkt, size_t len, size_t max_packet, itr_header *h)
{
    /* The order is normative: each datagram is counted under the first check it fails. */
    if (len < ITR_HEADER_LEN)
        return itr_drop_rc(ITR_DROP_TOO_SHORT);
    if (len > max_packet)
        return itr_drop_rc(ITR_DROP_TOO_LONG);

    h->version = (uint8_t)(pkt[0] >> 4);
    h->type = (uint8_t)(pkt[0] & 0x0fu);
    if (h->version != ITR_VERSION)
        return itr_drop_rc(ITR_DROP_BAD_VERSION);
    if (h->type > ITR_PT_MAX)
        return itr_drop_rc(ITR_DROP_BAD_TYPE);

    h->byte1 = pkt[1];
    h->intent = (uint8_t)(pkt[1] >> ITR_B1_INTENT_SHIFT);
    h->priority = (uint8_t)((pkt[1] >> ITR_B1_PRIORITY_SHIFT) & ITR_B1_PRIORITY_MASK);
    const uint8_t *q = itr_get_u16(pkt + 2, &h->payload_len);
    q = itr_get_u32(q, &h->conn_id);
    q = itr_get_u32(q, &h->seq);
    (void)itr_get_u32(q, &h->ack);

    if ((size_t)h->payload_len != len - ITR_HEADER_LEN)
        return itr_drop_rc(ITR_DROP_BAD_HEADER);
    if ((h->byte1 & ITR_B1_RESERVED_MASK) != 0)
        return itr_drop_rc(ITR_DROP_BAD_HEADER);
    if (h->type != ITR_PT_DATA && h->byte1 != 0)
        return itr_drop_rc(ITR_DROP_BAD_HEADER);
    if (h->intent > ITR_INTENT_RELIABLE)
        return itr_drop_rc(ITR_DROP_BAD_HEADER);
    return 0;
}
