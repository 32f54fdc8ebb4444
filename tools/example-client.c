/* example-client.c: the README example. Send one Reliable message to a gateway and wait until
 * the gateway acknowledges it, which it does once every sink on the message's route has it.
 *
 *   intentra-example-client HOST:PORT GATEWAY_KEY [KEY_FILE]
 *
 * GATEWAY_KEY is the gateway's public key (64 hex digits, or its key file). KEY_FILE is this
 * client's identity, created with mode 0600 on the first run (default: client.key). */
#include <stdio.h>
#include <string.h>

#include <intentra/intentra.h>

int main(int argc, char **argv)
{
    itr_client_options o = {.suite = ITR_SUITE_AESGCM};
    itr_client *c = NULL;
    char err[256] = "";
    int created, rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: %s HOST:PORT GATEWAY_KEY [KEY_FILE]\n", argv[0]);
        return 2;
    }
    o.gateway = argv[1];
    if (itr_keyfile_load_or_create(argc > 3 ? argv[3] : "client.key", o.static_private, &created,
                                   err, sizeof(err)) != ITR_OK ||
        itr_key_parse_public(argv[2], o.gateway_key, err, sizeof(err)) != ITR_OK ||
        itr_client_new(&c, &o, err, sizeof(err)) != ITR_OK ||
        itr_client_connect(c, 5000, err, sizeof(err)) != ITR_OK)
        goto out;

    const char *body = "{\"robot\":7,\"battery\":0.82}";
    uint32_t seq;
    int sent = itr_client_send(c, ITR_INTENT_RELIABLE, "telemetry.battery", body, strlen(body),
                               5000, &seq);
    if (sent == ITR_OK)
        sent = itr_client_drain(c, 5000); /* returns once the message is acknowledged */
    if (sent != ITR_OK) {
        snprintf(err, sizeof(err), "send: %s", itr_strerror(sent));
        goto out;
    }
    printf("message %u on telemetry.battery acknowledged by %s\n", seq, argv[1]);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "intentra-example-client: %s\n", err);
    itr_client_free(c); /* sends CLOSE */
    itr_wipe(o.static_private, sizeof(o.static_private));
    return rc;
}
