/* SPDX-License-Identifier: Apache-2.0 */
/* The audit trail: evidence/audit.jsonl, one JSON object per event, each carrying the SHA-256 of
 * the line before it ("prev"; 64 zeros for the first) and its place ("seq"). At the end the
 * manifest records the chain's head and length and is signed with the host's Ed25519 key
 * (manifest.sig), so a line edited, removed or reordered, a trail cut short, or a manifest
 * rewritten are all seen by cdn_evidence_verify. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "ev_internal.h"
#include "fsutil.h"

static json_t *array_of(json_t *root, const char *key) {
    json_t *a = json_object_get(root, key);
    if (!json_is_array(a)) {
        a = json_array();
        json_object_set_new(root, key, a);
    }
    return a;
}

int ev_audit_append(struct cdn_evidence *ev, const char *event, const char *key, json_t *value,
                    cdn_err **err) {
    if (!ev->head[0])
        snprintf(ev->head, sizeof(ev->head), "%s", CDN_AUDIT_FIRST_PREV);
    if (key)
        json_array_append(array_of(ev->root, key), value);
    char now[32];
    ev_now(now);
    json_t *line =
        json_pack("{s:I, s:s, s:s, s:s?, s:o, s:s}", "seq", (json_int_t)(ev->seq + 1), "at", now,
                  "event", event, "key", key, "value", value, "prev", ev->head);
    _cleanup_free_ char *raw = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    size_t n = 0;
    /* the chain is over the line as written: redacted */
    _cleanup_free_ char *text = raw ? cdn_redact(ev->redactor, raw, strlen(raw), &n) : NULL;
    if (!text)
        return cdn_err_set(err, ENOMEM, "out of memory");
    char path[4300];
    snprintf(path, sizeof(path), "%s/audit.jsonl", ev->dir);
    if (ev->audit_fd < 0 &&
        (ev->audit_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        return cdn_err_set(err, errno, "opening %s: %m", path);
    text[n] = '\n'; /* the NUL becomes the line's end: one write, one line */
    ssize_t w = write(ev->audit_fd, text, n + 1);
    text[n] = '\0';
    if (w != (ssize_t)(n + 1))
        return cdn_err_set(err, w < 0 ? errno : EIO, "appending to %s: %m", path);
    cdn_sha256_hex(text, n, ev->head);
    ev->seq++;
    return 0;
}

void cdn_evidence_event(struct cdn_evidence *ev, const char *event, json_t *fields) {
    cdn_err *e = NULL;
    if (ev_audit_append(ev, event, NULL, fields ? fields : json_object(), &e) < 0)
        cdn_evidence_limit_hit(ev, "evidence.audit", cdn_err_msg(e));
    cdn_err_free(e);
}

/* ---- the host's key ---- */

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free)

/* keys_dir/host-ed25519.pem (0600, made at first use) and its public half .pub. */
static int host_key(const char *keys_dir, EVP_PKEY **out, cdn_err **err) {
    char priv[4300], pub[4300];
    snprintf(priv, sizeof(priv), "%s/host-ed25519.pem", keys_dir);
    snprintf(pub, sizeof(pub), "%s/host-ed25519.pub", keys_dir);
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(priv, "r");
    if (in) {
        *out = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
        return *out ? 0 : cdn_err_set(err, EINVAL, "%s: not an Ed25519 private key", priv);
    }
    if (mkdir(keys_dir, 0700) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", keys_dir);
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k)
        return cdn_err_set(err, EIO, "making the host's Ed25519 key");
    char tmp[4400];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", priv, (int)getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    _cleanup_(BIO_freep) BIO *o = fd >= 0 ? BIO_new_fd(fd, BIO_NOCLOSE) : NULL;
    _cleanup_(BIO_freep) BIO *po = BIO_new_file(pub, "w");
    if (!o || !po || !PEM_write_bio_PrivateKey(o, k, NULL, NULL, 0, NULL, NULL) ||
        BIO_flush(o) != 1 || fsync(fd) < 0 || !PEM_write_bio_PUBKEY(po, k) || BIO_flush(po) != 1 ||
        rename(tmp, priv) < 0) {
        unlink(tmp);
        return cdn_err_set(err, EIO, "writing the host's key %s", priv);
    }
    *out = TAKE_PTR(k);
    return 0;
}

static int pubkey_sha256(EVP_PKEY *k, char hex[65]) {
    unsigned char raw[64];
    size_t n = sizeof(raw);
    if (EVP_PKEY_get_raw_public_key(k, raw, &n) != 1)
        return -EINVAL;
    cdn_sha256_hex(raw, n, hex);
    return 0;
}

int cdn_evidence_seal(struct cdn_evidence *ev, const char *keys_dir, cdn_err **err) {
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
    int r = host_key(keys_dir, &k, err);
    if (r < 0)
        return r;
    char kh[65];
    if (pubkey_sha256(k, kh) < 0)
        return cdn_err_set(err, EINVAL, "the host's key has no raw public key");
    json_object_set_new(ev->root, "signer",
                        json_pack("{s:s, s:s}", "alg", "ed25519", "public_key_sha256", kh));
    if ((r = cdn_evidence_save(ev, err)) < 0)
        return r;
    char path[4300];
    snprintf(path, sizeof(path), "%s/manifest.json", ev->dir);
    _cleanup_free_ char *m = NULL;
    size_t len;
    if ((r = cdn_read_file(path, CDN_EVIDENCE_MANIFEST_MAX, &m, &len, err)) < 0)
        return r;
    unsigned char sig[64];
    size_t siglen = sizeof(sig);
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)m, len) != 1)
        return cdn_err_set(err, EIO, "signing %s", path);
    char hex[129 + 1];
    for (size_t i = 0; i < siglen; i++)
        snprintf(hex + 2 * i, 3, "%02x", sig[i]);
    hex[2 * siglen] = '\n';
    snprintf(path, sizeof(path), "%s/manifest.sig", ev->dir);
    return cdn_write_atomic(path, hex, 2 * siglen + 1, err);
}

/* ---- verification ---- */

int cdn_evidence_verify(const char *dir, const char *pubkey_path, char *why, size_t size,
                        cdn_err **err) {
    why[0] = '\0';
    char path[4300];
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    _cleanup_free_ char *m = NULL, *sig = NULL, *trail = NULL;
    size_t mlen, slen, tlen;
    int r = cdn_read_file(path, CDN_EVIDENCE_MANIFEST_MAX, &m, &mlen, err);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "%s/manifest.sig", dir);
    if (cdn_read_file(path, 4096, &sig, &slen, NULL) < 0) {
        snprintf(why, size, "manifest.sig: missing (the task was not sealed)");
        return 0;
    }
    /* the signature first: nothing else is worth reading if the manifest is not the host's */
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(pubkey_path, "r");
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = in ? PEM_read_bio_PUBKEY(in, NULL, NULL, NULL) : NULL;
    if (!k)
        return cdn_err_set(err, ENOENT, "%s: not the host's public key", pubkey_path);
    unsigned char raw[64];
    size_t n = 0;
    for (; n < sizeof(raw) && 2 * n + 1 < slen && sscanf(sig + 2 * n, "%2hhx", &raw[n]) == 1; n++) {
    }
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (n != 64 || !ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) != 1 ||
        EVP_DigestVerify(ctx, raw, n, (const unsigned char *)m, mlen) != 1) {
        snprintf(why, size,
                 "manifest.sig: does not verify with %s (manifest or signature replaced)",
                 pubkey_path);
        return 0;
    }
    json_t *mj = json_loadb(m, mlen, 0, NULL);
    json_t *audit = json_object_get(mj, "audit");
    json_int_t want_lines = json_integer_value(json_object_get(audit, "lines"));
    char head[65];
    snprintf(head, sizeof(head), "%s", json_string_value(json_object_get(audit, "head")) ?: "");
    json_decref(mj);
    snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
    if (cdn_read_file(path, CDN_EVIDENCE_AUDIT_MAX, &trail, &tlen, NULL) < 0) {
        trail = strdup("");
        tlen = 0;
    }
    if (cdn_audit_check(trail, tlen, want_lines, head, why, size) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    return 0;
}
