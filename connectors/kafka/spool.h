/* spool.h: a disk buffer of records: append-only segment files, replayed in order, deleted
 * once every record of a segment was delivered. Used by the Kafka sink while its brokers are
 * unreachable; nothing in it is Kafka-specific beyond the record's fields.
 *
 * On disk: DIR/spool-<20-digit sequence>.seg, each starting with an 8-byte magic
 * ("ITRSPL1\n"), then records:
 *
 *     u32 length | u32 crc32c(payload) | payload (length bytes)          little-endian
 *     payload = u8 version (1) | u8 flags | i32 partition | i64 timestamp_ms
 *             | u16 topic_len | topic | u32 key_len (0xffffffff: no key) | key
 *             | u16 header_count | { u16 name_len | name | u32 value_len | value }*
 *             | u32 value_len | value
 *
 * Durability: gw_spool_append buffers; gw_spool_commit writes and fdatasyncs, and only then
 * are the appended records durable (the caller completes its deliveries after a successful
 * commit, never before). A failed commit cuts the segment back to its last durable size and
 * forgets every record appended since: the caller still holds them and appends them again.
 *
 * Recovery: gw_spool_open never appends to an existing segment (a crash may have torn its
 * tail): it starts a new one and replays the old ones first. A record whose length runs past
 * the end of its segment (a torn write) or whose CRC does not match is skipped and reported
 * once per segment through the log callback; a length that cannot be trusted ends the
 * segment there.
 *
 * Replay and acknowledgement: gw_spool_next hands out durable records oldest first (each
 * once per process); gw_spool_ack marks one delivered, in any order. A segment is deleted
 * when it is no longer the one being appended to, every record in it was read and every one
 * read was acknowledged. Records read but not acknowledged when the process ends are read
 * again by the next process (at least once).
 *
 * Bounds: max_bytes of segment files in total (gw_spool_append refuses past it:
 * ITR_ERR_WOULDBLOCK); segment_bytes per segment; a record at most GW_SPOOL_RECORD_MAX.
 *
 * Threads: a spool belongs to one thread, except gw_spool_bytes (any thread).
 */
#ifndef GW_SPOOL_H
#define GW_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define GW_SPOOL_RECORD_MAX  (16u << 20) /* largest encoded payload */
#define GW_SPOOL_MAX_HEADERS 32          /* headers per record */
#define GW_SPOOL_NO_KEY      0xffffffffu /* key_len on disk when the record has no key */
#define GW_SPOOL_FRAME_BYTES 8           /* length + crc in front of each payload */

typedef struct gw_spool gw_spool;

typedef struct gw_spool_header {
    const char *name;
    size_t name_len;
    const void *value;
    size_t value_len;
} gw_spool_header;

/* One record. Pointers are borrowed: into the caller's data for append, into the spool's read
 * buffer for gw_spool_next (valid until the next call on the spool). */
typedef struct gw_spool_record {
    uint8_t flags;        /* caller-defined */
    int32_t partition;    /* -1: none */
    int64_t timestamp_ms; /* 0: none */
    const char *topic;
    size_t topic_len; /* < 65536 */
    const void *key;  /* NULL: no key (distinct from an empty key) */
    size_t key_len;
    const gw_spool_header *headers;
    size_t header_count; /* <= GW_SPOOL_MAX_HEADERS */
    const void *value;
    size_t value_len;
} gw_spool_record;

typedef struct gw_spool_options {
    const char *dir;        /* created (0700) if missing */
    uint64_t max_bytes;     /* total size of the segment files */
    uint64_t segment_bytes; /* start a new segment past this size */
    /* Called for problems found while reading (torn or corrupt records); may be NULL. */
    void (*log)(void *arg, const char *msg);
    void *log_arg;
} gw_spool_options;

/* ---- record codec (pure; fuzzed) ---- */

/* Bytes gw_spool_encode writes for rec, frame included; 0 if rec cannot be encoded (a field
 * too long, too many headers, payload over GW_SPOOL_RECORD_MAX). */
size_t gw_spool_encoded_size(const gw_spool_record *rec);
/* Encode rec with its frame into out (gw_spool_encoded_size bytes). Returns the size or 0. */
size_t gw_spool_encode(const gw_spool_record *rec, uint8_t *out, size_t cap);
/* Decode one framed record from buf. headers: caller storage for GW_SPOOL_MAX_HEADERS.
 * Returns the bytes consumed (frame included), or ITR_ERR_PARTIAL (buf holds less than the
 * whole record; *need gets the total size when the frame was readable, else 0), or
 * ITR_ERR_PROTO (CRC mismatch or a malformed payload; *need gets the frame's size if its
 * length field is plausible, so the caller can skip it, else 0). */
long gw_spool_decode(const uint8_t *buf, size_t len, gw_spool_record *out, gw_spool_header *headers,
                     size_t *need);
/* CRC-32C (Castagnoli) of p. */
uint32_t gw_spool_crc32c(uint32_t crc, const void *p, size_t n);

/* ---- the spool ---- */

/* Open (or create) the spool in o->dir and index what an earlier process left there. The
 * directory is locked (flock on DIR/LOCK) until gw_spool_close, also against another spool
 * of the same process. On error err says why. Errors: ITR_ERR_INVALID (bad options),
 * ITR_ERR_WOULDBLOCK (the directory is locked: retry later), ITR_ERR_IO, ITR_ERR_NOMEM. */
int gw_spool_open(gw_spool **out, const gw_spool_options *o, char *err, size_t errlen);
/* Close the files; nothing is deleted. NULL is a no-op. */
void gw_spool_close(gw_spool *sp);

/* Buffer one record for the next commit. Errors: ITR_ERR_WOULDBLOCK (max_bytes reached:
 * retry after acknowledgements freed a segment), ITR_ERR_TOO_BIG (cannot be encoded),
 * ITR_ERR_NOMEM, ITR_ERR_IO (starting a new segment failed). */
int gw_spool_append(gw_spool *sp, const gw_spool_record *rec);
/* Write and fdatasync everything appended. Returns 0 (durable, readable by gw_spool_next) or
 * ITR_ERR_IO (errno set): the records appended since the last commit are forgotten. */
int gw_spool_commit(gw_spool *sp);
/* Records appended and not yet committed. */
size_t gw_spool_uncommitted(const gw_spool *sp);

/* The oldest durable record not yet handed out. *id identifies it for gw_spool_ack.
 * Errors: ITR_ERR_WOULDBLOCK (nothing to read), ITR_ERR_IO, ITR_ERR_NOMEM. */
int gw_spool_next(gw_spool *sp, gw_spool_record *rec, uint64_t *id);
/* 1 if gw_spool_next has a record to hand out (committed data not yet read), else 0. */
int gw_spool_has_unread(const gw_spool *sp);
/* Mark a record handed out by gw_spool_next as delivered; may delete its segment.
 * Errors: ITR_ERR_NOT_FOUND (unknown id, or acknowledged twice), ITR_ERR_IO (a segment could
 * not be deleted: counted, retried when the next one is). */
int gw_spool_ack(gw_spool *sp, uint64_t id);
/* Records handed out and not acknowledged. */
uint64_t gw_spool_unacked(const gw_spool *sp);

/* Size of the segment files (any thread). */
uint64_t gw_spool_bytes(const gw_spool *sp);
/* Records skipped as torn or corrupt since open. */
uint64_t gw_spool_skipped(const gw_spool *sp);

#endif
