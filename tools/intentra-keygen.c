/* intentra-keygen: creates a static identity (a 0600 X25519 private key file, never overwriting
 * one) and prints its public key in hex, or prints the public key of an existing key file.
 */
#include <stdio.h>
#include <string.h>

#include <intentra/keys.h>

static void usage(FILE *f)
{
    fputs("usage: intentra-keygen FILE\n"
          "       intentra-keygen --public FILE\n"
          "\n"
          "FILE             create a new private key file (mode 0600; refuses to overwrite an\n"
          "                 existing file) and print its public key in hex on stdout\n"
          "--public FILE    print the public key of an existing key file\n"
          "--help           this text\n"
          "--version        print the version\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n",
          f);
}

static int print_public(const uint8_t priv[ITR_KEY_LEN])
{
    uint8_t pub[ITR_KEY_LEN];
    char hex[2 * ITR_KEY_LEN + 1];
    if (itr_key_public(priv, pub) != ITR_OK) {
        fprintf(stderr, "intentra-keygen: invalid private key\n");
        return 1;
    }
    itr_hex_encode(hex, pub, sizeof(pub));
    if (printf("%s\n", hex) < 0 || fflush(stdout) != 0) {
        perror("intentra-keygen: stdout");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint8_t priv[ITR_KEY_LEN];
    char err[512];
    int rc;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("intentra-keygen %s\n", INTENTRA_VERSION);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--public") == 0) {
        if (itr_keyfile_load(argv[2], priv, err, sizeof(err)) != ITR_OK) {
            fprintf(stderr, "intentra-keygen: %s\n", err);
            return 1;
        }
        rc = print_public(priv);
        itr_wipe(priv, sizeof(priv));
        return rc;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    if (itr_keyfile_create(argv[1], priv, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "intentra-keygen: %s\n", err);
        return 1;
    }
    rc = print_public(priv);
    itr_wipe(priv, sizeof(priv));
    return rc;
}
