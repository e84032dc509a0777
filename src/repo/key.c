/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "key.h"

#include <jansson.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"

#define KDF_MAX_MEM (60u * 1024 * 1024)

static double time_scrypt(const HfKdfParams *p)
{
        static const uint8_t salt[64];
        HfKey k;
        double t0 = hf_now_mono();

        if (hf_kdf_scrypt("calibration", 11, salt, sizeof(salt), p->N, p->r, p->p, &k) < 0)
                return -1;
        hf_key_wipe(&k);
        return hf_now_mono() - t0;
}

int hf_kdf_calibrate_with(unsigned target_ms, double (*timer)(const HfKdfParams *),
                          HfKdfParams *ret)
{
        HfKdfParams p = { .N = 16384, .r = 8, .p = 1 };
        double target = target_ms / 1000.0, t;

        /*
         * N first, as restic does: doubled while the memory (128 N r bytes) stays within the
         * cap and one pass is estimated to stay under the target. The estimate only picks N;
         * the time of a pass is then measured at that N, twice (the first pays for the fresh
         * memory and the library's first use), and p passes fill the target.
         */
        t = timer(&p);
        if (t < 0)
                return -EIO;
        while (t * 2 < target && 128 * p.N * 2 * p.r <= KDF_MAX_MEM) {
                p.N *= 2;
                t *= 2;
        }
        for (int i = 0; i < 2; i++) {
                double m = timer(&p);
                if (m < 0)
                        return -EIO;
                if (i == 0 || m < t)
                        t = m;
        }
        if (t > 0 && t < target)
                p.p = (uint32_t)MIN(target / t + 0.5, 64.0);
        *ret = p;
        return 0;
}

int hf_kdf_calibrate(unsigned target_ms, HfKdfParams *ret)
{
        return hf_kdf_calibrate_with(target_ms, time_scrypt, ret);
}

int hf_kdf_params_parse(const char *s, HfKdfParams *ret)
{
        unsigned long long n;
        unsigned r, p;
        char extra;

        if (sscanf(s, "%llu,%u,%u%c", &n, &r, &p, &extra) != 3)
                return -EINVAL;
        if (n < 2 || (n & (n - 1)) || r == 0 || p == 0 || r > (1u << 20) || p > (1u << 20))
                return -EINVAL;
        /* 128*N*r bytes of memory, at most 1 GiB; divide rather than multiply (overflow). */
        if (n > (1ULL << 30) / (128ULL * r) || (uint64_t)r * p >= (1ULL << 30))
                return -EINVAL;
        *ret = (HfKdfParams){ .N = n, .r = r, .p = p };
        return 0;
}

void hf_keyfile_done(HfKeyFile *k)
{
        free(k->username);
        free(k->hostname);
        hf_buf_free(&k->salt);
        hf_buf_free(&k->data);
        memset(k, 0, sizeof(*k));
}

static int key_error(HfBuf *err, const char *msg)
{
        if (err) {
                hf_buf_reset(err);
                (void)hf_buf_puts(err, msg);
        }
        return -EPROTO;
}

static int get_b64(json_t *o, const char *key, HfBuf *out)
{
        json_t *v = json_object_get(o, key);

        if (!v || !json_is_string(v))
                return -EPROTO;
        return hf_base64_decode(out, json_string_value(v), json_string_length(v)) < 0 ? -EPROTO : 0;
}

static char *dup_opt_string(json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key);
        return strdup(v && json_is_string(v) ? json_string_value(v) : "");
}

int hf_keyfile_parse(const void *json, size_t n, HfKeyFile *ret, HfBuf *err)
{
        HfKeyFile k = { .salt = HF_BUF_INIT(4096), .data = HF_BUF_INIT(4096) };
        json_error_t jerr;
        json_t *root, *v;
        int r = -EPROTO;

        root = json_loadb(json, n, 0, &jerr);
        if (!root || !json_is_object(root)) {
                r = key_error(err, "key file is not valid JSON");
                goto out;
        }
        v = json_object_get(root, "kdf");
        if (!v || !json_is_string(v) || strcmp(json_string_value(v), "scrypt") != 0) {
                r = key_error(err, "key file does not use scrypt");
                goto out;
        }
        json_int_t N = json_integer_value(json_object_get(root, "N"));
        json_int_t rr = json_integer_value(json_object_get(root, "r"));
        json_int_t p = json_integer_value(json_object_get(root, "p"));
        if (N < 2 || (N & (N - 1)) || rr < 1 || p < 1 || rr > (1 << 20) || p > (1 << 20)) {
                r = key_error(err, "key file has invalid scrypt parameters");
                goto out;
        }
        k.params = (HfKdfParams){ .N = (uint64_t)N, .r = (uint32_t)rr, .p = (uint32_t)p };
        if (get_b64(root, "salt", &k.salt) < 0 || get_b64(root, "data", &k.data) < 0) {
                r = key_error(err, "key file has a missing or invalid salt or data field");
                goto out;
        }
        if (k.data.len < HF_CRYPTO_OVERHEAD) {
                r = key_error(err, "key file's data field is too short");
                goto out;
        }
        v = json_object_get(root, "created");
        if (v && json_is_string(v))
                (void)hf_time_parse(json_string_value(v), json_string_length(v), &k.created);
        k.username = dup_opt_string(root, "username");
        k.hostname = dup_opt_string(root, "hostname");
        if (!k.username || !k.hostname) {
                r = -ENOMEM;
                goto out;
        }
        *ret = k;
        k = (HfKeyFile){ 0 };
        r = 0;
out:
        json_decref(root);
        hf_keyfile_done(&k);
        return r;
}

static void wipe_buf(HfBuf *b)
{
        if (b->data)
                explicit_bzero(b->data, b->cap);
        hf_buf_free(b);
}

int hf_masterkey_parse(const void *json, size_t n, HfKey *ret)
{
        HfBuf enc = HF_BUF_INIT(64), mk = HF_BUF_INIT(64), mr = HF_BUF_INIT(64);
        json_error_t jerr;
        json_t *root = json_loadb(json, n, 0, &jerr), *mac;
        HfKey k;
        int r = -EPROTO;

        if (!root || !json_is_object(root))
                goto out;
        mac = json_object_get(root, "mac");
        if (!mac || !json_is_object(mac))
                goto out;
        if (get_b64(root, "encrypt", &enc) < 0 || get_b64(mac, "k", &mk) < 0 ||
            get_b64(mac, "r", &mr) < 0)
                goto out;
        if (enc.len != 32 || mk.len != 16 || mr.len != 16)
                goto out;
        memcpy(k.encrypt, enc.data, 32);
        memcpy(k.mac_k, mk.data, 16);
        memcpy(k.mac_r, mr.data, 16);
        if (hf_key_valid(&k)) {
                *ret = k;
                r = 0;
        }
        hf_key_wipe(&k);
out:
        wipe_buf(&enc);
        wipe_buf(&mk);
        wipe_buf(&mr);
        json_decref(root);
        return r;
}

int hf_masterkey_format(const HfKey *k, HfBuf *out)
{
        int r;

        r = hf_buf_puts(out, "{\"mac\":{\"k\":\"");
        if (r >= 0)
                r = hf_base64_encode(out, k->mac_k, 16);
        if (r >= 0)
                r = hf_buf_puts(out, "\",\"r\":\"");
        if (r >= 0)
                r = hf_base64_encode(out, k->mac_r, 16);
        if (r >= 0)
                r = hf_buf_puts(out, "\"},\"encrypt\":\"");
        if (r >= 0)
                r = hf_base64_encode(out, k->encrypt, 32);
        if (r >= 0)
                r = hf_buf_puts(out, "\"}");
        return r;
}

int hf_keyfile_open(const HfKeyFile *k, const char *password, HfKey *ret_master)
{
        HfBuf plain = HF_BUF_INIT(4096);
        HfKey user;
        int r;

        r = hf_kdf_scrypt(password, strlen(password), k->salt.data, k->salt.len, k->params.N,
                          k->params.r, k->params.p, &user);
        if (r < 0)
                return r;
        r = hf_decrypt_buf(&user, k->data.data, k->data.len, &plain);
        hf_key_wipe(&user);
        if (r >= 0)
                r = hf_masterkey_parse(plain.data, plain.len, ret_master);
        wipe_buf(&plain);
        return r;
}

int hf_keyfile_create(const char *password, const HfKey *master, const HfKdfParams *params,
                      const char *username, const char *hostname, HfBuf *out)
{
        HfBuf mk = HF_BUF_INIT(4096), enc = HF_BUF_INIT(4096);
        uint8_t salt[64];
        HfKey user;
        int r;

        r = hf_random_bytes(salt, sizeof(salt));
        if (r < 0)
                return r;
        r = hf_kdf_scrypt(password, strlen(password), salt, sizeof(salt), params->N, params->r,
                          params->p, &user);
        if (r < 0)
                return r;
        r = hf_masterkey_format(master, &mk);
        if (r >= 0)
                r = hf_encrypt_buf(&user, mk.data, mk.len, &enc);
        hf_key_wipe(&user);
        wipe_buf(&mk);
        if (r < 0)
                goto out;

        r = hf_buf_puts(out, "{\"created\":\"");
        if (r >= 0) {
                HfTime now = hf_time_now();
                r = hf_time_format(out, &now);
        }
        if (r >= 0)
                r = hf_buf_puts(out, "\",\"username\":");
        if (r >= 0)
                r = hf_json_put_string(out, username, strlen(username));
        if (r >= 0)
                r = hf_buf_puts(out, ",\"hostname\":");
        if (r >= 0)
                r = hf_json_put_string(out, hostname, strlen(hostname));
        if (r >= 0)
                r = hf_buf_printf(out,
                                  ",\"kdf\":\"scrypt\",\"N\":%llu,\"r\":%u,\"p\":%u,\"salt\":\"",
                                  (unsigned long long)params->N, params->r, params->p);
        if (r >= 0)
                r = hf_base64_encode(out, salt, sizeof(salt));
        if (r >= 0)
                r = hf_buf_puts(out, "\",\"data\":\"");
        if (r >= 0)
                r = hf_base64_encode(out, enc.data, enc.len);
        if (r >= 0)
                r = hf_buf_puts(out, "\"}");
out:
        hf_buf_free(&enc);
        return r;
}
